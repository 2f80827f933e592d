import {
  ArtifactViewSchema, BuilderViewSchema, BuildViewSchema, DashboardEventSchema, WorkerViewSchema,
  type ArtifactView, type BuilderView, type BuildState, type BuildView, type DashboardEvent, type WorkerView,
} from '../../protocol/api.js';
import { DiffoscopeReportSchema, type DiffoscopeReport } from '../../protocol/diffoscope-report.js';
import { FARM_KEY_URL, FarmKeySchema, ProvenanceBundleSchema, type FarmKey, type ProvenanceBundle } from '../../protocol/provenance.js';
import { API_BASE, buildsPath, takePrefetched } from './first-load';

/**
 * The master's REST API (`/api/v1`) and its events WebSocket, for the browser. Every JSON
 * answer and every event frame is checked against the protocol's zod schemas before the
 * rest of the dashboard sees it — the first requests too, which boot.ts sent before this
 * module was loaded (first-load.ts).
 */

export { API_BASE };

/** A failed request: `status` is the HTTP status (0 when the master could not be reached). */
export class ApiError extends Error {
  constructor(readonly status: number, message: string) {
    super(message);
    this.name = 'ApiError';
  }

  /** 401 (no token) or 403 (wrong token). */
  get isAuth(): boolean {
    return this.status === 401 || this.status === 403;
  }
}

export interface BuildQuery {
  builder?: string;
  state?: BuildState;
  limit?: number;
  /** Only builds with an id below this one (the next page of older builds). */
  before?: number;
}

export interface Parser<T> {
  safeParse(data: unknown): { success: true; data: T } | { success: false; error: { issues: readonly { path: readonly PropertyKey[]; message: string }[] } };
}

const BuilderListSchema = BuilderViewSchema.array();
const BuildListSchema = BuildViewSchema.array();
const WorkerListSchema = WorkerViewSchema.array();
const ArtifactListSchema = ArtifactViewSchema.array();

function describe(issues: readonly { path: readonly PropertyKey[]; message: string }[]): string {
  return issues.slice(0, 3).map((i) => `${i.path.map(String).join('.') || '(root)'}: ${i.message}`).join('; ');
}

/** One request to the master's API; throws ApiError naming the master's reason when it is not 2xx. */
export async function request(path: string, init: RequestInit = {}): Promise<Response> {
  let res: Response;
  try {
    // A plain GET boot.ts already sent is answered from there (once).
    const early = init.method === undefined && init.headers === undefined ? takePrefetched(path) : undefined;
    res = await (early ?? fetch(`${API_BASE}${path}`, { ...init, headers: { accept: 'application/json', ...init.headers } }));
  } catch (e) {
    throw new ApiError(0, `cannot reach the master: ${(e as Error).message}`);
  }
  if (res.ok) return res;
  let message = `HTTP ${res.status}`;
  try {
    const body = (await res.json()) as { error?: unknown };
    if (typeof body.error === 'string') message = body.error;
  } catch { /* not JSON: keep the status */ }
  throw new ApiError(res.status, message);
}

/** GET `path` (with `init`, e.g. the admin token) and check the answer against `schema`. */
export async function getJson<T>(path: string, schema: Parser<T>, init: RequestInit = {}): Promise<T> {
  const res = await request(path, init);
  const parsed = schema.safeParse(await res.json());
  if (!parsed.success) throw new ApiError(res.status, `unexpected answer from ${API_BASE}${path}: ${describe(parsed.error.issues)}`);
  return parsed.data;
}

async function postJson(path: string, token: string, body: unknown): Promise<unknown> {
  const res = await request(path, {
    method: 'POST',
    headers: { authorization: `Bearer ${token}`, 'content-type': 'application/json' },
    body: JSON.stringify(body),
  });
  return res.json();
}

export function fetchBuilders(): Promise<BuilderView[]> {
  return getJson('/builders', BuilderListSchema);
}

export function fetchBuilds(query: BuildQuery = {}): Promise<BuildView[]> {
  return getJson(buildsPath(query), BuildListSchema);
}

export function fetchBuild(id: number): Promise<BuildView> {
  return getJson(`/builds/${id}`, BuildViewSchema);
}

export async function fetchLog(id: number): Promise<string> {
  const res = await request(`/builds/${id}/log`, { headers: { accept: 'text/plain' } });
  return res.text();
}

export function fetchArtifacts(id: number): Promise<ArtifactView[]> {
  return getJson(`/builds/${id}/artifacts`, ArtifactListSchema);
}

export function fetchWorkers(): Promise<WorkerView[]> {
  return getJson('/workers', WorkerListSchema);
}

export function logUrl(id: number): string {
  return `${API_BASE}/builds/${id}/log`;
}

export function artifactUrl(id: number, name: string): string {
  return `${API_BASE}/builds/${id}/artifacts/${encodeURIComponent(name)}`;
}

export async function postForceBuild(builder: string, token: string, body: { revision?: string; reason?: string }): Promise<number> {
  const answer = (await postJson(`/builders/${encodeURIComponent(builder)}/builds`, token, body)) as { id?: unknown };
  if (typeof answer.id !== 'number') throw new ApiError(201, 'the master did not say which build it queued');
  return answer.id;
}

export async function postRebuild(id: number, token: string): Promise<number> {
  const answer = (await postJson(`/builds/${id}/rebuild`, token, {})) as { id?: unknown };
  if (typeof answer.id !== 'number') throw new ApiError(201, 'the master did not say which build it queued');
  return answer.id;
}

export async function postCancelBuild(id: number, token: string): Promise<void> {
  await postJson(`/builds/${id}/cancel`, token, {});
}

// ---------------------------------------------------------------------------------------------
// The events WebSocket

export type ConnectionStatus = 'connecting' | 'open' | 'reconnecting';

export interface EventStreamHandlers {
  onEvent(event: DashboardEvent): void;
  /** Every status change; `retryInMs` is set while waiting to reconnect. */
  onStatus(status: ConnectionStatus, detail: { retryInMs: number | null; error: string | null }): void;
  /** The socket opened again after it had been lost: data may have been missed. */
  onReconnect(): void;
  /** A frame that is not a valid DashboardEvent (it is dropped). */
  onInvalid?(problem: string): void;
}

export interface EventStream {
  close(): void;
}

export interface EventStreamOptions {
  url?: string;
  minDelayMs?: number;
  maxDelayMs?: number;
}

export function eventsUrl(loc: Pick<Location, 'protocol' | 'host'> = window.location): string {
  return `${loc.protocol === 'https:' ? 'wss' : 'ws'}://${loc.host}${API_BASE}/events`;
}

/** Parses one frame; a string describing the problem when it is not a DashboardEvent. */
export function parseEvent(text: string): DashboardEvent | string {
  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch {
    return 'a frame that is not JSON';
  }
  const parsed = DashboardEventSchema.safeParse(json);
  return parsed.success ? parsed.data : `an invalid event: ${describe(parsed.error.issues)}`;
}

/** Opens the events WebSocket and keeps it open: reconnects with backoff (1 s doubling to 15 s, with jitter). */
export function openEventStream(handlers: EventStreamHandlers, options: EventStreamOptions = {}): EventStream {
  const url = options.url ?? eventsUrl();
  const minDelay = options.minDelayMs ?? 1000;
  const maxDelay = options.maxDelayMs ?? 15_000;
  let socket: WebSocket | null = null;
  let timer: ReturnType<typeof setTimeout> | null = null;
  let failures = 0;
  let everOpened = false;
  let closed = false;

  const connect = () => {
    timer = null;
    if (closed) return;
    handlers.onStatus(everOpened || failures > 0 ? 'reconnecting' : 'connecting', { retryInMs: null, error: null });
    const ws = new WebSocket(url);
    socket = ws;
    ws.onopen = () => {
      failures = 0;
      handlers.onStatus('open', { retryInMs: null, error: null });
      if (everOpened) handlers.onReconnect();
      everOpened = true;
    };
    ws.onmessage = (msg: MessageEvent) => {
      if (typeof msg.data !== 'string') { handlers.onInvalid?.('a binary frame'); return; }
      // The master dropped events while this dashboard was behind: refetch, as after a reconnect.
      if (msg.data === '{"type":"resync"}') { handlers.onReconnect(); return; }
      const event = parseEvent(msg.data);
      if (typeof event === 'string') handlers.onInvalid?.(event);
      else handlers.onEvent(event);
    };
    ws.onclose = (e: CloseEvent) => {
      if (socket !== ws) return;
      socket = null;
      if (closed) return;
      failures++;
      const delay = Math.min(maxDelay, minDelay * 2 ** Math.min(failures - 1, 8)) * (0.8 + Math.random() * 0.4);
      const why = e.reason ? `connection closed: ${e.reason}` : 'connection to the master lost';
      handlers.onStatus('reconnecting', { retryInMs: Math.round(delay), error: why });
      timer = setTimeout(connect, delay);
    };
    // 'error' is always followed by 'close', which schedules the retry.
    ws.onerror = () => undefined;
  };

  connect();
  return {
    close() {
      closed = true;
      if (timer) clearTimeout(timer);
      socket?.close(1000, 'dashboard closed');
      socket = null;
    },
  };
}

/** [provenance] The provenance bundle of an artifact (for `crowdbake verify`). */
export function provenanceUrl(id: number, name: string): string {
  return `${artifactUrl(id, name)}/provenance`;
}

/** [provenance] An artifact's provenance bundle (the farm's signed summary and the attempts' statements). */
export function fetchProvenance(id: number, name: string): Promise<ProvenanceBundle> {
  return getJson(`/builds/${id}/artifacts/${encodeURIComponent(name)}/provenance`, ProvenanceBundleSchema);
}

/** [provenance] The diffoscope diagnosis of a replicated build's group. */
export function fetchDiffoscope(id: number): Promise<DiffoscopeReport> {
  return getJson(`/builds/${id}/diffoscope`, DiffoscopeReportSchema);
}

/** [provenance] The key that signs this farm's summaries (to pin). */
export async function fetchFarmKey(): Promise<FarmKey> {
  const res = await fetch(FARM_KEY_URL, { headers: { accept: 'application/json' } });
  const parsed = FarmKeySchema.safeParse(res.ok ? await res.json() : null);
  if (!parsed.success) throw new ApiError(res.status, `unexpected answer from ${FARM_KEY_URL}`);
  return parsed.data;
}
