import * as z from 'zod';
import {
  AgentStatusSchema, HistoryEntrySchema, PreferencesSchema,
  type AgentStatus, type HistoryEntry, type Preferences, type PreferencesPatch,
} from '../../../protocol/control-api.js';

import type { AppInfo, AppSettings, ProjectView } from '../../../protocol/app-ipc.js';
import { appBridge, callApp } from './app-bridge';

/**
 * The local agent's control API (`/api/v1` on 127.0.0.1), for the volunteer pages. The browser
 * is signed in by the session cookie `crowdbake ui` set; every answer is checked against the
 * protocol's schemas. In the desktop app the same calls go through the preload's IPC map
 * (app-bridge.ts) instead, which main forwards to the same API.
 */

export class AgentApiError extends Error {
  constructor(readonly status: number, message: string) {
    super(message);
    this.name = 'AgentApiError';
  }
}

const HistoryListSchema = z.array(HistoryEntrySchema);

async function request(path: string, init: RequestInit = {}): Promise<Response> {
  let res: Response;
  try {
    res = await fetch(`/api/v1${path}`, { credentials: 'same-origin', ...init, headers: { accept: 'application/json', ...init.headers } });
  } catch (e) {
    throw new AgentApiError(0, `cannot reach the agent: ${(e as Error).message}`);
  }
  if (res.ok) return res;
  let message = `HTTP ${res.status}`;
  try {
    const body = (await res.json()) as { error?: unknown };
    if (typeof body.error === 'string') message = body.error;
  } catch { /* not JSON */ }
  throw new AgentApiError(res.status, message);
}

async function json<T>(path: string, schema: z.ZodType<T>, init?: RequestInit): Promise<T> {
  const res = await request(path, init);
  const parsed = schema.safeParse(await res.json());
  if (!parsed.success) throw new AgentApiError(res.status, `unexpected answer from /api/v1${path}: ${parsed.error.issues[0]?.path.join('.')}: ${parsed.error.issues[0]?.message}`);
  return parsed.data;
}

const post = (body?: unknown): RequestInit => ({
  method: 'POST',
  headers: { 'content-type': 'application/json' },
  body: JSON.stringify(body ?? {}),
});

const app = () => appBridge() !== null;

export async function getStatus(): Promise<AgentStatus> {
  if (!app()) return json('/status', AgentStatusSchema);
  const s = await callApp('agent:status');
  if ('offline' in s) throw new AgentApiError(0, s.offline);
  return s;
}
export const pause = () => (app() ? callApp('agent:pause') : json('/pause', AgentStatusSchema, post()));
export const resume = () => (app() ? callApp('agent:resume') : json('/resume', AgentStatusSchema, post()));
export const snooze = (duration: string) => (app() ? callApp('agent:snooze', duration) : json('/snooze', AgentStatusSchema, post({ duration })));
/** "Finish the current build, then pause". */
export const finishThenPause = () => (app() ? callApp('agent:finish-then-pause') : updatePreferences({ pauseAfterCurrent: true }).then(getStatus));

export const updatePreferences = (patch: PreferencesPatch): Promise<Preferences> => (app() ? callApp('agent:preferences', patch)
  : json('/preferences', PreferencesSchema, { method: 'PATCH', headers: { 'content-type': 'application/json' }, body: JSON.stringify(patch) }));

export function getHistory(limit: number, builder?: string): Promise<HistoryEntry[]> {
  if (app()) return callApp('agent:history', { limit, ...(builder ? { builder } : {}) });
  const q = new URLSearchParams({ limit: String(limit) });
  if (builder) q.set('builder', builder);
  return json(`/history?${q}`, HistoryListSchema);
}

export const getEntry = (id: number) => (app() ? callApp('agent:entry', id) : json(`/history/${id}`, HistoryEntrySchema));
export const rerun = (id: number) => (app() ? callApp('agent:rerun', id) : json(`/history/${id}/rerun`, HistoryEntrySchema, post()));

// The projects this computer joined: in the app through main (the same code as `crowdbake join|projects|leave`), in a browser through the agent.
const ProjectListSchema = z.array(z.object({
  name: z.string(), farm: z.string(), master: z.string(), worker: z.string(), share: z.number(), joinedAt: z.string(), state: z.string(),
  running: z.number().optional(), usedSeconds: z.number().optional(),
}));
export const listProjects = (): Promise<ProjectView[]> => (app() ? callApp('projects:list') : json('/projects', ProjectListSchema));
export const setShare = (name: string, share: number): Promise<ProjectView[]> => (app() ? callApp('projects:share', { name, share })
  : json(`/projects/${encodeURIComponent(name)}`, ProjectListSchema, { method: 'PATCH', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ share }) }));
export const leaveProject = (name: string): Promise<ProjectView[]> => (app() ? callApp('projects:leave', name)
  : json(`/projects/${encodeURIComponent(name)}`, ProjectListSchema, { method: 'DELETE' }));
export const joinProject = (link: string, displayName?: string) => (app() ? callApp('projects:join', { link, ...(displayName ? { displayName } : {}) })
  : json('/projects', z.object({ project: z.string(), worker: z.string(), farm: z.string(), volunteerName: z.string(), trust: z.string(), labels: z.array(z.string()) }), post({ link, ...(displayName ? { displayName } : {}) })));

// The app's own calls (only in the desktop app).
export const getAppInfo = (): Promise<AppInfo> => callApp('app:info');
export const saveAppSettings = (change: Partial<Omit<AppSettings, 'masterConfigDir'>>): Promise<AppSettings> => callApp('app:settings', change);
export const startMaster = () => callApp('app:start-master');
export const openDashboard = () => callApp('app:open-dashboard');

/** The log of entry `id` from byte `from` on, and the size it has now. */
export async function readLog(id: number, from: number): Promise<{ bytes: Uint8Array; size: number }> {
  if (app()) {
    const r = await callApp('agent:log', { id, from });
    return { bytes: Uint8Array.from(atob(r.base64), (c) => c.charCodeAt(0)), size: r.size };
  }
  const res = await request(`/history/${id}/log?from=${from}`, { headers: { accept: 'text/plain' } });
  const bytes = new Uint8Array(await res.arrayBuffer());
  const size = Number(res.headers.get('x-log-size') ?? from + bytes.length);
  return { bytes, size };
}

export const logUrl = (id: number) => `/api/v1/history/${id}/log`;

export type { AgentStatus, AppInfo, AppSettings, HistoryEntry, Preferences, PreferencesPatch, ProjectView };
