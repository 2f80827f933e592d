import type { BuildView, DashboardEvent } from '../../../protocol/api.js';
import * as api from '../api';
import { RECENT_LIMIT, usedPrefetch } from '../first-load';
import { mergeLog } from '../log-merge';
import { dashboard } from './store';
import { withAdminToken } from './admin';

/**
 * What the dashboard does, as plain functions: callable from components, from the console or
 * from a test, with no React in sight. They talk to the master (api.ts) and write the store.
 */

/** Builds fetched per builder for its row of cells. */
export const CELLS_PER_BUILDER = 16;
/** Builds per builder on the Grid page (those beyond the builders page's cells come from the recent builds loaded). */
export const GRID_CELLS = 30;
/** Older builds fetched per "Load older builds" (the API's largest page). */
const PAGE = 1000;

// Freshness bookkeeping (not UI state): the event counter when each item last came from the
// socket. A REST answer never overwrites an item an event updated after the request left.
let eventSeq = 0;
const buildStamps = new Map<number, number>();
const workerStamps = new Map<string, number>();
let buildersStamp = 0;
/** Log chunks for the selected build that arrived while its log was being fetched. */
let pendingLog: string[] = [];
let selectionLoad = 0;
const historiesLoaded = new Set<string>();
let buildersRefresh: ReturnType<typeof setTimeout> | null = null;
let stream: api.EventStream | null = null;

const state = () => dashboard.getState();
const message = (e: unknown) => (e instanceof Error ? e.message : String(e));

function putBuildsFrom(list: readonly BuildView[], since: number): void {
  state().putBuilds(list, (id) => (buildStamps.get(id) ?? -1) > since);
}

/** Connects to the master and loads everything; returns a function that disconnects. */
export function startDashboard(): () => void {
  stream?.close();
  let firstOpen = true;
  stream = api.openEventStream({
    onEvent: applyEvent,
    onStatus: (status, detail) => {
      state().setConnection(status, detail);
      // The first answers may come from boot.ts's requests, sent before this socket listened:
      // what changed in between arrives with no event, so load once more now that it listens.
      if (status === 'open' && firstOpen) {
        firstOpen = false;
        if (usedPrefetch()) void refreshAll();
      }
    },
    onReconnect: () => void refreshAll(),
    onInvalid: (problem) => {
      state().countInvalidFrame();
      console.warn(`crowdbake dashboard: dropped ${problem}`);
    },
  });
  void refreshAll();
  return () => {
    stream?.close();
    stream = null;
  };
}

/** Applies one validated event from the socket. */
export function applyEvent(event: DashboardEvent): void {
  const seq = ++eventSeq;
  switch (event.type) {
    case 'build': {
      const before = state().builds[event.build.id];
      buildStamps.set(event.build.id, seq);
      state().putBuilds([event.build]);
      const sel = state().selection;
      if (sel.buildId === event.build.id && event.build.state === 'finished' && before?.state !== 'finished') {
        void loadArtifacts(event.build.id);
      }
      // [crowd] a finished build changes the credit the Contributors page shows.
      if (event.build.state === 'finished' && before?.state !== 'finished') state().countFinished();
      return;
    }
    case 'worker': {
      const before = state().workers[event.worker.name];
      workerStamps.set(event.worker.name, seq);
      state().putWorkers([event.worker]);
      // Whether a builder is runnable depends on who is connected; the master sends no
      // builders event for that, so ask again when a worker comes or goes.
      if (before?.connected !== event.worker.connected) scheduleBuildersRefresh();
      return;
    }
    case 'builders':
      buildersStamp = seq;
      state().setBuilders(event.builders);
      void loadHistories(event.builders.map((b) => b.name));
      return;
    case 'log': {
      const sel = state().selection;
      if (sel.buildId !== event.buildId) return;
      if (sel.logStatus === 'loading') pendingLog.push(event.data);
      else if (sel.logStatus === 'ready') state().appendLog(event.data);
      return;
    }
  }
}

/** Reloads builders, workers, recent builds and the open build (at start and after a reconnect). */
export async function refreshAll(): Promise<void> {
  historiesLoaded.clear();
  const results = await Promise.allSettled([
    refreshBuilders(),
    refreshWorkers(),
    loadRecentBuilds(),
    ...(state().selection.buildId !== null ? [reloadSelectedBuild()] : []),
  ]);
  const failed = results.find((r): r is PromiseRejectedResult => r.status === 'rejected');
  state().setLoadError(failed ? `Could not load from the master: ${message(failed.reason)}` : null);
}

export async function refreshBuilders(): Promise<void> {
  const since = eventSeq;
  const builders = await api.fetchBuilders();
  if (buildersStamp > since) return;
  state().setBuilders(builders);
  await loadHistories(builders.map((b) => b.name));
}

export async function refreshWorkers(): Promise<void> {
  const since = eventSeq;
  const workers = await api.fetchWorkers();
  state().putWorkers(workers, (name) => (workerStamps.get(name) ?? -1) > since);
}

function scheduleBuildersRefresh(): void {
  if (buildersRefresh) return;
  buildersRefresh = setTimeout(() => {
    buildersRefresh = null;
    refreshBuilders().catch((e: unknown) => state().setLoadError(`Could not load builders: ${message(e)}`));
  }, 250);
}

export async function loadRecentBuilds(): Promise<void> {
  const since = eventSeq;
  const [recent, queued] = await Promise.all([
    api.fetchBuilds({ limit: RECENT_LIMIT }),
    api.fetchBuilds({ state: 'queued', limit: 1000 }),
  ]);
  putBuildsFrom([...recent, ...queued], since);
  state().setBuildsLoaded(true);
  if (recent.length < RECENT_LIMIT) state().setOlderAvailable(false);
}

/** Fetches the last builds of builders whose cells were not loaded yet. */
async function loadHistories(names: readonly string[]): Promise<void> {
  const todo = names.filter((n) => !historiesLoaded.has(n));
  for (const n of todo) historiesLoaded.add(n);
  await Promise.all(todo.map(async (builder) => {
    const since = eventSeq;
    try {
      putBuildsFrom(await api.fetchBuilds({ builder, limit: GRID_CELLS }), since);
    } catch (e) {
      historiesLoaded.delete(builder);
      throw e;
    }
  }));
}

/** The next page of older builds for the Builds page; resolves to false when there are no more. */
export async function loadOlderBuilds(builder: string | null): Promise<boolean> {
  const s = state();
  const ids = builder ? s.buildIds.filter((id) => s.builds[id]?.builder === builder) : s.buildIds;
  const before = ids.length ? ids[ids.length - 1] : undefined;
  const since = eventSeq;
  const page = await api.fetchBuilds({ limit: PAGE, ...(before !== undefined ? { before } : {}), ...(builder ? { builder } : {}) });
  putBuildsFrom(page, since);
  const more = page.length === PAGE;
  if (!more && !builder) state().setOlderAvailable(false);
  return more;
}

// ---------------------------------------------------------------------------------------------
// The build page

/** Shows build `id`: fetches it, its log (then follows `log` events) and its artifacts. */
export async function openBuild(id: number): Promise<void> {
  const sel = state().selection;
  // Already shown and kept current by events (unless its first load failed).
  if (sel.buildId === id && sel.logStatus !== 'error' && sel.buildError === null && sel.artifactsError === null) return;
  state().selectBuild(id);
  await reloadSelectedBuild();
}

export function closeBuild(): void {
  selectionLoad++;
  pendingLog = [];
  state().selectBuild(null);
}

async function reloadSelectedBuild(): Promise<void> {
  const id = state().selection.buildId;
  if (id === null) return;
  const load = ++selectionLoad;
  const current = () => load === selectionLoad && state().selection.buildId === id;
  state().markLogLoading();
  pendingLog = [];
  const since = eventSeq;
  await Promise.all([
    api.fetchBuild(id).then(
      (b) => { if (current()) { putBuildsFrom([b], since); state().setBuildError(null); } },
      (e: unknown) => { if (current()) state().setBuildError(e instanceof api.ApiError && e.status === 404 ? `There is no build ${id}.` : message(e)); },
    ),
    api.fetchLog(id).then(
      (text) => { if (current()) { state().setLog(mergeLog(text, pendingLog)); pendingLog = []; } },
      (e: unknown) => { if (current()) state().setLogError(message(e)); },
    ),
    loadArtifacts(id),
  ]);
}

async function loadArtifacts(id: number): Promise<void> {
  try {
    const artifacts = await api.fetchArtifacts(id);
    if (state().selection.buildId === id) state().setArtifacts(artifacts);
  } catch (e) {
    if (state().selection.buildId === id) state().setArtifacts(null, message(e));
  }
}

// ---------------------------------------------------------------------------------------------
// Writes (they need the admin token)

export type WriteOutcome<T> = { ok: true; value: T } | { ok: false; cancelled: boolean; error: string };

/** Runs an admin write with the token (asked for when none is kept); never throws. */
export async function write<T>(purpose: string, run: (token: string) => Promise<T>): Promise<WriteOutcome<T>> {
  try {
    const value = await withAdminToken(purpose, run);
    return value === null ? { ok: false, cancelled: true, error: 'No admin token was given.' } : { ok: true, value: value.value };
  } catch (e) {
    return { ok: false, cancelled: false, error: message(e) };
  }
}

/** Queues a build of `builder`; resolves to its id. */
export async function forceBuild(builder: string, opts: { revision?: string; reason?: string } = {}): Promise<WriteOutcome<number>> {
  const out = await write(`force a build of ${builder}`, (token) =>
    api.postForceBuild(builder, token, { reason: opts.reason ?? 'forced from the dashboard', ...(opts.revision ? { revision: opts.revision } : {}) }));
  if (out.ok) void fetchOne(out.value);
  return out;
}

/** Queues a new build of the same builder, revision and branch as build `build`, linked to it. */
export async function rebuild(build: BuildView): Promise<WriteOutcome<number>> {
  const out = await write(`rebuild build ${build.id}`, (token) => api.postRebuild(build.id, token));
  if (out.ok) void fetchOne(out.value);
  return out;
}

export async function cancelBuild(id: number): Promise<WriteOutcome<void>> {
  const out = await write(`cancel build ${id}`, (token) => api.postCancelBuild(id, token));
  if (out.ok) void fetchOne(id);
  return out;
}

/** Refreshes one build (in case the event for it is late or the socket is down). */
async function fetchOne(id: number): Promise<void> {
  const since = eventSeq;
  try {
    putBuildsFrom([await api.fetchBuild(id)], since);
  } catch { /* the event brings it */ }
}
