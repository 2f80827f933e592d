import type { BuildView, WorkerView } from '../../../protocol/api.js';
import type { DashboardState } from './store';

/**
 * Narrow selectors: each reads the least a component needs, so a log chunk does not re-render
 * the builders page. Those returning a fresh array are used with `useShallow` (see hooks.ts).
 */

type S = DashboardState;

export const selectBuilders = (s: S) => s.builders;
export const selectBuildersLoaded = (s: S) => s.buildersLoaded;
export const selectBuilder = (name: string) => (s: S) => s.builders.find((b) => b.name === name);
export const selectBuilderNames = (s: S) => s.builders.map((b) => b.name);

export const selectBuild = (id: number) => (s: S): BuildView | undefined => s.builds[id];
export const selectBuildsLoaded = (s: S) => s.buildsLoaded;
export const selectOlderAvailable = (s: S) => s.olderAvailable;

/** The newest `limit` builds of one builder, newest first. */
export const selectBuilderBuildIds = (builder: string, limit: number) => (s: S): number[] => {
  const out: number[] = [];
  for (const id of s.buildIds) {
    if (s.builds[id]?.builder === builder) out.push(id);
    if (out.length >= limit) break;
  }
  return out;
};

/** Queued builds, in the order they will run (oldest first), optionally of one builder. */
export const selectQueueIds = (builder: string | null) => (s: S): number[] =>
  s.buildIds.filter((id) => {
    const b = s.builds[id];
    return b?.state === 'queued' && (builder === null || b.builder === builder);
  }).reverse();

/** Builds that are not queued (running, frozen, finished), newest first, optionally of one builder. */
export const selectHistoryIds = (builder: string | null) => (s: S): number[] =>
  s.buildIds.filter((id) => {
    const b = s.builds[id];
    return b !== undefined && b.state !== 'queued' && (builder === null || b.builder === builder);
  });

export const selectWorkerNames = (s: S) => s.workerNames;
export const selectWorkersLoaded = (s: S) => s.workersLoaded;
export const selectWorker = (name: string) => (s: S): WorkerView | undefined => s.workers[name];

/**
 * The builds a worker runs now. The worker's own list is refreshed only when it (dis)connects,
 * so builds this dashboard knows to be running there are added and known finished ones dropped.
 */
export const selectWorkerBuildIds = (name: string) => (s: S): number[] => {
  const w = s.workers[name];
  if (!w?.connected) return [];
  const ids = new Set<number>();
  for (const id of w.builds) if (s.builds[id]?.state !== 'finished' && s.builds[id]?.state !== 'queued') ids.add(id);
  for (const id of s.buildIds) {
    const b = s.builds[id]!;
    if (b.worker === name && (b.state === 'running' || b.state === 'frozen')) ids.add(id);
  }
  return [...ids].sort((a, b) => a - b);
};

export type WorkerActivity = WorkerView['state'];

/** idle / busy / frozen / offline, from the worker and the builds known to run on it. */
export const selectWorkerActivity = (name: string) => (s: S): WorkerActivity => {
  const w = s.workers[name];
  if (!w) return 'offline';
  if (!w.connected) return 'offline';
  const ids = selectWorkerBuildIds(name)(s);
  if (ids.some((id) => s.builds[id]?.state === 'frozen') || (w.state === 'frozen' && ids.length > 0)) return 'frozen';
  return ids.length > 0 ? 'busy' : 'idle';
};

export const selectConnection = (s: S) => s.connection;
export const selectSelection = (s: S) => s.selection;
export const selectSelectedLog = (s: S) => s.selection.log;
export const selectTokenPrompt = (s: S) => s.tokenPrompt;
export const selectHasAdminToken = (s: S) => s.hasAdminToken;
export const selectBuildError = (s: S) => s.selection.buildError;
export const selectArtifacts = (s: S) => s.selection.artifacts;
export const selectArtifactsError = (s: S) => s.selection.artifactsError;
