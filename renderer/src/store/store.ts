import { createStore, type StoreApi } from 'zustand/vanilla';
import { createAuthSlice, type AuthSlice } from './auth-slice';
import { createBuildersSlice, type BuildersSlice } from './builders-slice';
import { createBuildsSlice, type BuildsSlice } from './builds-slice';
import { createConnectionSlice, type ConnectionSlice } from './connection-slice';
import { createCrowdSlice, type CrowdSlice } from './crowd-slice';
import { createSelectionSlice, type SelectionSlice } from './selection-slice';
import { createWorkersSlice, type WorkersSlice } from './workers-slice';

/**
 * The dashboard's one store, made of slices. Each slice holds plain data plus the setters
 * that change it; the actions in actions.ts (plain functions, callable outside React) talk to
 * the master and call those setters; components read through the narrow selectors in
 * selectors.ts via the hooks in hooks.ts.
 */
export type DashboardState = BuildersSlice & BuildsSlice & WorkersSlice & SelectionSlice & ConnectionSlice & AuthSlice & CrowdSlice;

export function createDashboardStore(): StoreApi<DashboardState> {
  return createStore<DashboardState>()((...a) => ({
    ...createBuildersSlice(...a),
    ...createBuildsSlice(...a),
    ...createWorkersSlice(...a),
    ...createSelectionSlice(...a),
    ...createConnectionSlice(...a),
    ...createAuthSlice(...a),
    ...createCrowdSlice(...a),
  }));
}

/** The store the running dashboard uses. */
export const dashboard = createDashboardStore();
