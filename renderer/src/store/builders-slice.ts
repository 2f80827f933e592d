import type { StateCreator } from 'zustand/vanilla';
import type { BuilderView } from '../../../protocol/api.js';
import type { DashboardState } from './store';

export interface BuildersSlice {
  /** The master's builders, as the last `builders` event or GET /builders gave them. */
  builders: BuilderView[];
  buildersLoaded: boolean;
  setBuilders(builders: BuilderView[]): void;
}

export const createBuildersSlice: StateCreator<DashboardState, [], [], BuildersSlice> = (set) => ({
  builders: [],
  buildersLoaded: false,
  setBuilders: (builders) => set({ builders: [...builders].sort((a, b) => a.name.localeCompare(b.name)), buildersLoaded: true }),
});
