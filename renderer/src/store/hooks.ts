import { useStore } from 'zustand';
import { useShallow } from 'zustand/react/shallow';
import { dashboard, type DashboardState } from './store';
import * as sel from './selectors';

/** Reads the dashboard store; `selector` should return a stable value (use the array hooks below otherwise). */
export function useDashboard<T>(selector: (s: DashboardState) => T): T {
  return useStore(dashboard, selector);
}

function useDashboardList<T>(selector: (s: DashboardState) => T[]): T[] {
  return useStore(dashboard, useShallow(selector));
}

export const useBuilders = () => useDashboard(sel.selectBuilders);
export const useBuildersLoaded = () => useDashboard(sel.selectBuildersLoaded);
export const useBuilderNames = () => useDashboardList(sel.selectBuilderNames);
export const useBuild = (id: number) => useDashboard(sel.selectBuild(id));
export const useBuildsLoaded = () => useDashboard(sel.selectBuildsLoaded);
export const useOlderAvailable = () => useDashboard(sel.selectOlderAvailable);
export const useBuilderBuildIds = (builder: string, limit: number) => useDashboardList(sel.selectBuilderBuildIds(builder, limit));
export const useQueueIds = (builder: string | null) => useDashboardList(sel.selectQueueIds(builder));
export const useHistoryIds = (builder: string | null) => useDashboardList(sel.selectHistoryIds(builder));
export const useWorkerNames = () => useDashboard(sel.selectWorkerNames);
export const useWorkersLoaded = () => useDashboard(sel.selectWorkersLoaded);
export const useWorker = (name: string) => useDashboard(sel.selectWorker(name));
export const useWorkerBuildIds = (name: string) => useDashboardList(sel.selectWorkerBuildIds(name));
export const useWorkerActivity = (name: string) => useDashboard(sel.selectWorkerActivity(name));
export const useConnection = () => useDashboard(sel.selectConnection);
export const useSelection = () => useDashboard(sel.selectSelection);
export const useBuildError = () => useDashboard(sel.selectBuildError);
export const useArtifacts = () => useDashboard(sel.selectArtifacts);
export const useArtifactsError = () => useDashboard(sel.selectArtifactsError);
export const useTokenPrompt = () => useDashboard(sel.selectTokenPrompt);
export const useHasAdminToken = () => useDashboard(sel.selectHasAdminToken);
