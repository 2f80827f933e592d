import type { StateCreator } from 'zustand/vanilla';
import type { WorkerView } from '../../../protocol/api.js';
import type { DashboardState } from './store';

export interface WorkersSlice {
  workers: Record<string, WorkerView>;
  /** Names of `workers`, sorted. */
  workerNames: string[];
  workersLoaded: boolean;
  /** Adds or replaces workers; `skip(name)` keeps the copy already held (it is newer). */
  putWorkers(list: readonly WorkerView[], skip?: (name: string) => boolean): void;
}

export const createWorkersSlice: StateCreator<DashboardState, [], [], WorkersSlice> = (set, get) => ({
  workers: {},
  workerNames: [],
  workersLoaded: false,
  putWorkers: (list, skip) => {
    const incoming = list.filter((w) => !skip?.(w.name));
    const state = get();
    const workers = { ...state.workers };
    let added = false;
    for (const w of incoming) {
      if (!(w.name in workers)) added = true;
      workers[w.name] = w;
    }
    const workerNames = added ? Object.keys(workers).sort((a, b) => a.localeCompare(b)) : state.workerNames;
    set({ workers, workerNames, workersLoaded: true });
  },
});
