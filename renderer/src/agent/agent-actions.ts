import { capLog } from '../log-merge';
import { appBridge } from './app-bridge';
import * as api from './agent-api';
import { agentStore, emptyLog } from './agent-store';

/**
 * What the volunteer pages do, as plain functions: poll the agent's state, keep the history,
 * follow one log, and send pause/resume/snooze/limits/re-run.
 */

const STATUS_EVERY_MS = 1000;
const HISTORY_EVERY_MS = 5000;
const LOG_EVERY_MS = 500;
const HISTORY_LIMIT = 500;
/** The log kept in memory: its last 2 MB (the raw log has all of it). */
const MAX_LOG_CHARS = 2 * 1024 * 1024;

const set = agentStore.setState;
const get = agentStore.getState;
const message = (e: unknown) => (e instanceof Error ? e.message : String(e));

let statusTimer: ReturnType<typeof setTimeout> | null = null;
let lastHistoryAt = 0;
let lastCurrent = '';
let logTimer: ReturnType<typeof setTimeout> | null = null;
let logLoad = 0;
let decoder = new TextDecoder();

function signedOut(e: unknown): boolean {
  if (e instanceof api.AgentApiError && e.status === 401) {
    set({ signedOut: true });
    return true;
  }
  return false;
}

/** Starts polling the agent; returns a function that stops. */
export function startAgent(): () => void {
  const tick = async () => {
    if (appBridge()) await refreshApp();
    // On the first-run screen there is no agent to ask yet.
    if (get().app?.firstRun) { statusTimer = setTimeout(() => void tick(), STATUS_EVERY_MS); return; }
    await refreshStatus();
    const current = JSON.stringify(get().status?.current.map((c) => c.historyId) ?? []);
    if (current !== lastCurrent || Date.now() - lastHistoryAt > HISTORY_EVERY_MS) {
      lastCurrent = current;
      await refreshHistory();
    }
    if (!get().signedOut) statusTimer = setTimeout(() => void tick(), STATUS_EVERY_MS);
  };
  void tick();
  return () => {
    if (statusTimer) clearTimeout(statusTimer);
    statusTimer = null;
  };
}

export async function refreshStatus(): Promise<void> {
  try {
    set({ status: await api.getStatus(), statusError: null, signedOut: false });
  } catch (e) {
    if (!signedOut(e)) set({ statusError: message(e) });
  }
}

export async function refreshHistory(): Promise<void> {
  lastHistoryAt = Date.now();
  try {
    set({ history: await api.getHistory(HISTORY_LIMIT), historyLoaded: true, historyError: null });
  } catch (e) {
    if (!signedOut(e)) set({ historyError: message(e) });
  }
}

/** The desktop app's state (first run, master, settings, update notice). */
export async function refreshApp(): Promise<void> {
  try { set({ app: await api.getAppInfo() }); } catch (e) { set({ statusError: message(e) }); }
}

export async function refreshProjects(): Promise<void> {
  try {
    set({ projects: await api.listProjects(), projectsLoaded: true, projectsError: null });
  } catch (e) {
    if (!signedOut(e)) set({ projectsError: message(e), projectsLoaded: true });
  }
}

export type Outcome = { ok: true } | { ok: false; error: string };

async function act(run: () => Promise<unknown>): Promise<Outcome> {
  try {
    await run();
    await refreshStatus();
    return { ok: true };
  } catch (e) {
    signedOut(e);
    return { ok: false, error: message(e) };
  }
}

export const pause = () => act(async () => set({ status: await api.pause() }));
export const resume = () => act(async () => set({ status: await api.resume() }));
export const snooze = (duration = '1h') => act(async () => set({ status: await api.snooze(duration) }));
export const savePreferences = (patch: api.PreferencesPatch) => act(() => api.updatePreferences(patch));
export const finishThenPause = () => act(() => api.finishThenPause());
export const setShare = (name: string, share: number) => act(async () => set({ projects: await api.setShare(name, share) }));
export const leaveProject = (name: string) => act(async () => { set({ projects: await api.leaveProject(name) }); if (appBridge()) await refreshApp(); });
export const saveAppSettings = (change: Partial<api.AppSettings>) => act(async () => { await api.saveAppSettings(change); await refreshApp(); });
export const openDashboard = () => act(() => api.openDashboard());
export const startMaster = () => act(async () => { await api.startMaster(); await refreshApp(); });

/** Joins the project of a pasted (or opened) link; the reason it was refused, if it was. */
export async function joinProject(link: string, displayName?: string): Promise<{ ok: true; project: string } | { ok: false; error: string }> {
  try {
    const r = await api.joinProject(link, displayName);
    if (appBridge()) await refreshApp();
    await refreshProjects();
    return { ok: true, project: r.project };
  } catch (e) {
    return { ok: false, error: message(e) };
  }
}

/** Runs local build `id` again on this machine; resolves to the new entry's id. */
export async function rerun(id: number): Promise<{ ok: true; id: number } | { ok: false; error: string }> {
  try {
    const entry = await api.rerun(id);
    await refreshHistory();
    return { ok: true, id: entry.id };
  } catch (e) {
    signedOut(e);
    return { ok: false, error: message(e) };
  }
}

// ---------------------------------------------------------------------------------------------
// One log, followed while its build runs

/** Shows local build `id`'s log (null: none) and follows it until the build ends. */
export function openLog(id: number | null): void {
  if (get().log.id === id) return;
  const load = ++logLoad;
  if (logTimer) clearTimeout(logTimer);
  logTimer = null;
  decoder = new TextDecoder();
  set({ log: emptyLog(id) });
  if (id === null) return;
  const poll = async () => {
    if (load !== logLoad) return;
    try {
      const entry = await api.getEntry(id);
      const wasRunning = entry.finishedAt === null;
      const { bytes, size } = await api.readLog(id, get().log.size);
      if (load !== logLoad) return;
      const chunk = decoder.decode(bytes, { stream: wasRunning });
      // The build ended since the last read: the history list changes too.
      if (!wasRunning && get().log.entry?.finishedAt === null) void refreshHistory();
      const capped = capLog(get().log.text + chunk, MAX_LOG_CHARS);
      set({ log: { ...get().log, entry, text: capped.text, truncated: get().log.truncated || capped.truncated, size: get().log.size + bytes.length, status: 'ready', error: null } });
      // Read once more after the build ended, then stop.
      if (wasRunning || size > get().log.size) logTimer = setTimeout(() => void poll(), LOG_EVERY_MS);
    } catch (e) {
      if (load !== logLoad) return;
      if (!signedOut(e)) set({ log: { ...get().log, status: 'error', error: message(e) } });
      if (!(e instanceof api.AgentApiError && (e.status === 404 || e.status === 401))) logTimer = setTimeout(() => void poll(), LOG_EVERY_MS * 4);
    }
  };
  void poll();
}
