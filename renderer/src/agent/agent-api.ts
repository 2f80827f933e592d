import * as z from 'zod';
import {
  AgentStatusSchema, HistoryEntrySchema, PreferencesSchema,
  type AgentStatus, type HistoryEntry, type Preferences, type PreferencesPatch,
} from '../../../protocol/control-api.js';

/**
 * The local agent's control API (`/api/v1` on 127.0.0.1), for the volunteer pages. The browser
 * is signed in by the session cookie `crowdbake ui` set; every answer is checked against the
 * protocol's schemas.
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

export const getStatus = () => json('/status', AgentStatusSchema);
export const pause = () => json('/pause', AgentStatusSchema, post());
export const resume = () => json('/resume', AgentStatusSchema, post());
export const snooze = (duration: string) => json('/snooze', AgentStatusSchema, post({ duration }));

export const updatePreferences = (patch: PreferencesPatch): Promise<Preferences> =>
  json('/preferences', PreferencesSchema, { method: 'PATCH', headers: { 'content-type': 'application/json' }, body: JSON.stringify(patch) });

export function getHistory(limit: number, builder?: string): Promise<HistoryEntry[]> {
  const q = new URLSearchParams({ limit: String(limit) });
  if (builder) q.set('builder', builder);
  return json(`/history?${q}`, HistoryListSchema);
}

export const getEntry = (id: number) => json(`/history/${id}`, HistoryEntrySchema);
export const rerun = (id: number) => json(`/history/${id}/rerun`, HistoryEntrySchema, post());

/** The log of entry `id` from byte `from` on, and the size it has now. */
export async function readLog(id: number, from: number): Promise<{ bytes: Uint8Array; size: number }> {
  const res = await request(`/history/${id}/log?from=${from}`, { headers: { accept: 'text/plain' } });
  const bytes = new Uint8Array(await res.arrayBuffer());
  const size = Number(res.headers.get('x-log-size') ?? from + bytes.length);
  return { bytes, size };
}

export const logUrl = (id: number) => `/api/v1/history/${id}/log`;

export type { AgentStatus, HistoryEntry, Preferences, PreferencesPatch };
