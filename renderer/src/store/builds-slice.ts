import type { StateCreator } from 'zustand/vanilla';
import type { BuildView } from '../../../protocol/api.js';
import type { DashboardState } from './store';

/** Past this many builds in memory the oldest are dropped (the selected one is kept). */
export const MAX_BUILDS = 20_000;

export interface BuildsSlice {
  builds: Record<number, BuildView>;
  /** Ids of `builds`, newest (highest id) first. */
  buildIds: number[];
  buildsLoaded: boolean;
  /** False once a "load older" page came back short. */
  olderAvailable: boolean;
  /** Adds or replaces builds; `skip(id)` keeps the copy already held (it is newer). */
  putBuilds(list: readonly BuildView[], skip?: (id: number) => boolean): void;
  setBuildsLoaded(loaded: boolean): void;
  setOlderAvailable(available: boolean): void;
}

export const createBuildsSlice: StateCreator<DashboardState, [], [], BuildsSlice> = (set, get) => ({
  builds: {},
  buildIds: [],
  buildsLoaded: false,
  olderAvailable: true,
  putBuilds: (list, skip) => {
    const incoming = list.filter((b) => !skip?.(b.id));
    if (incoming.length === 0) return;
    const state = get();
    const builds = { ...state.builds };
    let added = false;
    for (const b of incoming) {
      if (!(b.id in builds)) added = true;
      builds[b.id] = b;
    }
    let buildIds = state.buildIds;
    if (added) {
      buildIds = Object.keys(builds).map(Number).sort((a, b) => b - a);
      if (buildIds.length > MAX_BUILDS) {
        const keep = state.selection.buildId;
        for (const id of buildIds.slice(MAX_BUILDS)) if (id !== keep) delete builds[id];
        buildIds = buildIds.filter((id) => id in builds);
      }
    }
    set({ builds, buildIds });
  },
  setBuildsLoaded: (buildsLoaded) => set({ buildsLoaded }),
  setOlderAvailable: (olderAvailable) => set({ olderAvailable }),
});
