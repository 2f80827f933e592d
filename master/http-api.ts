import { readFileSync } from 'node:fs';
import type { IncomingMessage, ServerResponse } from 'node:http';
import { isIP } from 'node:net';
import { BuildStateSchema, DrainRequestSchema, ForceBuildRequestSchema, type BuilderView, type CloudView, type WorkerView } from '../protocol/api.js';
import { redactUrl } from '../protocol/source-url.js';
import type { BuilderDefinition } from '../protocol/builder-file.js';
import type { Capabilities } from '../protocol/worker-messages.js';
import { describeIssues } from '../protocol/parse.js';
import type { ArtifactStore } from './artifact-store.js';
import { ConflictError, NotFoundError, toBuildView, type Coordinator } from './coordinator.js';
import type { BuildLogs } from './log-store.js';
import { executorFor, whyUnrunnable } from './matching.js';
import type { ChangeSources } from './sources/change-sources.js';
import type { BuildRow, Store } from './store/store.js';
import { AuthThrottle } from './auth-throttle.js';
import { secretsEqual } from './tokens.js';
import type { Verification } from './verification.js';
import { isDiskFull, type DiskSpace } from './disk-space.js';
import { readiness, type LeaseView, type MasterMetrics } from './metrics.js';
import { workerView } from './views.js';
import { StaticFiles } from './static-files.js';
import { log } from './log.js';
import { OLDEST_WORKER_PROTOCOL_UNTIL, oldestAcceptedProtocol, PROTOCOL_VERSION, type VersionInfo } from '../protocol/version.js';

/** This Crowdbake's version (package.json, two levels above dist/master/). */
const MASTER_VERSION = (() => {
  try { return String((JSON.parse(readFileSync(new URL('../../package.json', import.meta.url), 'utf8')) as { version?: unknown }).version ?? 'unknown'); } catch { return 'unknown'; }
})();

export interface BuilderCatalog {
  list(): { name: string; definition: BuilderDefinition | null; error: string | null }[];
}

export class HttpError extends Error {
  constructor(readonly status: number, message: string) { super(message); }
}

const MAX_BODY = 64 * 1024;

/** The REST API (`/api/v1`), `/healthz` and the dashboard's static files. */
export class HttpApi {
  private staticFiles: StaticFiles | undefined;

  constructor(
    private readonly deps: {
      store: Store; coordinator: Coordinator; builders: BuilderCatalog; logs: BuildLogs;
      /** Several masters: the last view of a worker connected to another master. */
      remoteWorker?: (name: string) => WorkerView | undefined;
      artifacts: ArtifactStore; adminToken: string; staticDir: string | null; sources?: ChangeSources;
      latent?: {
        couldRun(builder: BuilderDefinition): boolean; size: number;
        /** [cloud] */
        waitReason?(builder: BuilderDefinition, row: BuildRow): string | null; cloud?(): CloudView[];
      };
      verification?: Verification;
      disk?: DiskSpace;
      /** [provenance] the farm key, artifacts' provenance bundles, diffoscope reports (master/provenance/routes.ts). */
      provenance?: { handle(req: IncomingMessage, res: ServerResponse, url: URL, access: { read(): void; admin(): void }): Promise<boolean> };
      /** [crowd] joining, invites, volunteers, credit (master/enrollment/routes.ts). */
      enrollment?: { handle(req: IncomingMessage, res: ServerResponse, url: URL, requireAdmin: () => void): Promise<boolean> };
      /** false (crowdbake.yml `public: false`): every read needs the admin token too. Default true. */
      public?: boolean;
      /** The client address of a request (trusted-proxy aware); default the socket's peer. */
      addressOf?: (req: IncomingMessage) => string;
      /** Where the master listens, for the Host check of a loopback master. */
      listen?: () => { host: string; port: number } | null;
      /** `GET /metrics` (Prometheus); read like the API (`public: false` needs the token). */
      metrics?: MasterMetrics;
      /** Several masters: this master's lease and the singletons it runs, for `GET /readyz`. */
      lease?: () => LeaseView | null;
    },
  ) {}

  handle(req: IncomingMessage, res: ServerResponse): void {
    // Every answer, page or API: never inside another site's frame (clickjacking Force/Cancel/Rebuild).
    for (const [k, v] of Object.entries(SECURITY_HEADERS)) res.setHeader(k, v);
    const listen = this.deps.listen?.();
    const wrongHost = listen ? hostRefusal(req.headers.host, listen.host, listen.port) : null;
    if (wrongHost) { sendJson(res, 421, { error: wrongHost }); return; }
    this.route(req, res).catch((e: unknown) => {
      if (isDiskFull(e)) {
        this.deps.disk?.sawFull(e as Error);
        e = new HttpError(507, `the master's disk is full (${(e as Error).message}); nothing was stored: try again once space is freed`);
      }
      const status = e instanceof HttpError ? e.status : e instanceof NotFoundError ? 404 : e instanceof ConflictError ? 409 : 500;
      if (status === 500) log.error('request failed:', e);
      if (res.headersSent) { res.destroy(); return; }
      sendJson(res, status, { error: status === 500 ? `internal error: ${(e as Error).message}` : (e as Error).message });
    });
  }

  private async route(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const url = new URL(req.url ?? '/', 'http://x');
    const path = url.pathname;
    const method = req.method ?? 'GET';
    const d = this.deps;
    if (path === '/healthz') return sendJson(res, 200, { ok: true });
    if (path === '/readyz') { const r = await readiness(d.store, 2000, d.lease?.() ?? null); return sendJson(res, r.status, r.body); }
    if (path === '/metrics' && d.metrics) {
      if (d.public === false) this.requireAdmin(req);
      return d.metrics.serve(res);
    }
    if (d.provenance && (await d.provenance.handle(req, res, url, { read: () => this.checkRead(req), admin: () => this.requireAdmin(req) }))) return;
    // Which worker protocols this master accepts (the desktop app tells its volunteer when to update); public like /healthz.
    if (path === '/api/v1/version' && method === 'GET') return sendJson(res, 200, versionInfo(new Date()));
    if (!path.startsWith('/api/')) return this.serveStatic(req, path, res);
    // A private farm (`public: false`): reads need the token too. Hooks carry their own signature, joining its code.
    if (d.public === false && (method === 'GET' || method === 'HEAD') && path !== '/api/v1/enrollment') this.requireAdmin(req);

    let m: RegExpExecArray | null;
    if (path === '/api/v1/builders' && method === 'GET') return sendJson(res, 200, this.builderViews());
    if ((m = /^\/api\/v1\/hooks\/([^/]+)$/.exec(path)) && method === 'POST' && d.sources) return d.sources.handleHook(decodeURIComponent(m[1]!), req, res);
    if ((m = /^\/api\/v1\/builders\/([^/]+)\/builds$/.exec(path)) && method === 'POST') {
      this.requireAdmin(req);
      const full = d.disk?.problem();
      if (full) throw new HttpError(507, full);
      const body = ForceBuildRequestSchema.safeParse(await readJson(req));
      if (!body.success) throw new HttpError(400, `bad request body: ${describeIssues(body.error)}`);
      const name = decodeURIComponent(m[1]!);
      if (body.data.branch !== undefined && d.builders.list().find((b) => b.name === name)?.definition?.source === null) {
        throw new HttpError(400, `branch: builder "${name}" has no source to take a branch of`);
      }
      const row = await d.coordinator.requestBuild(name, { ...body.data, trigger: 'force' });
      return sendJson(res, 201, { id: row.id });
    }
    if (path === '/api/v1/builds' && method === 'GET') {
      const state = url.searchParams.get('state');
      const parsedState = state ? BuildStateSchema.safeParse(state) : null;
      if (parsedState && !parsedState.success) throw new HttpError(400, `state must be one of ${BuildStateSchema.options.join(', ')}`);
      const limit = intParam(url, 'limit', 50, 1, 1000);
      const before = url.searchParams.has('before') ? intParam(url, 'before', 0, 1, Number.MAX_SAFE_INTEGER) : undefined;
      const rows = await d.store.listBuilds({
        limit,
        ...(url.searchParams.get('builder') ? { builder: url.searchParams.get('builder')! } : {}),
        ...(parsedState?.success ? { state: parsedState.data } : {}),
        ...(before !== undefined ? { beforeId: before } : {}),
      });
      const steps = await d.store.listSteps(rows.map((r) => r.id));
      const views = await Promise.all(rows.map(async (r) => toBuildView(r, steps.filter((s) => s.buildId === r.id), await d.verification?.viewOf(r.id))));
      return sendJson(res, 200, views);
    }
    if ((m = /^\/api\/v1\/builds\/(\d+)(\/.*)?$/.exec(path))) {
      const id = Number(m[1]);
      const rest = m[2] ?? '';
      const row = await d.store.getBuild(id);
      if (!row) throw new HttpError(404, `no build ${id}`);
      if (rest === '' && method === 'GET') {
        const view = toBuildView(row, await d.store.listSteps([id]), await d.verification?.viewOf(id));
        return sendJson(res, 200, row.state === 'queued' ? { ...view, waitReason: this.waitReason(row) } : view);
      }
      if (rest === '/log' && method === 'GET') {
        res.writeHead(200, { 'content-type': 'text/plain; charset=utf-8', 'cache-control': 'no-store' });
        const stream = d.logs.read(id);
        if (!stream) { res.end(); return; }
        stream.pipe(res);
        return;
      }
      if (rest === '/artifacts' && method === 'GET') {
        const group = await d.verification?.viewOf(id);
        const verified = group ? { verified: group.verdict === 'verified' } : {};
        return sendJson(res, 200, (await d.store.listArtifacts(id)).map(({ name, size, sha256, worker }) => ({ name, size, sha256, worker, ...verified })));
      }
      const am = /^\/artifacts\/([^/]+)$/.exec(rest);
      if (am && method === 'GET') {
        const name = decodeURIComponent(am[1]!);
        const art = (await d.store.listArtifacts(id)).find((a) => a.name === name);
        const withheld = art ? await d.verification?.withheld(id) : null;
        if (withheld) throw new HttpError(409, withheld);
        const stream = art ? await d.artifacts.read(id, name) : null;
        if (!art || !stream) throw new HttpError(404, `build ${id} has no artifact "${name}"`);
        res.writeHead(200, {
          'content-type': 'application/octet-stream', 'content-length': art.size,
          'content-disposition': `attachment; filename="${name.replace(/"/g, '')}"`, 'x-sha256': art.sha256,
        });
        stream.pipe(res);
        return;
      }
      if (rest === '/rebuild' && method === 'POST') {
        this.requireAdmin(req);
        const rebuilt = await d.coordinator.rebuild(id);
        return sendJson(res, 201, { id: rebuilt.id, rebuildOf: id });
      }
      if (rest === '/cancel' && method === 'POST') {
        this.requireAdmin(req);
        await d.coordinator.cancel(id);
        return sendJson(res, 202, { id, cancelled: true });
      }
    }
    if (path === '/api/v1/workers' && method === 'GET') {
      const rows = await d.store.listWorkers();
      const flags = await d.store.listWorkerFlags();
      return sendJson(res, 200, rows.map((w) => {
        const caps = parseCaps(w.capabilities);
        const own = flags.filter((f) => f.worker === w.name).map(({ buildId, reason, at }) => ({ buildId, reason, at }));
        // Several masters: a worker connected to another one is shown as that master last said (farm/event-relay.ts).
        const local = d.coordinator.session(w.name);
        const remote = local ? undefined : d.remoteWorker?.(w.name);
        return { ...(remote ?? workerView(w.name, caps, local ?? null, w.lastSeenAt)), lastSeenAt: w.lastSeenAt, flags: own };
      }));
    }
    if ((m = /^\/api\/v1\/workers\/([^/]+)\/drain$/.exec(path)) && method === 'POST') {
      this.requireAdmin(req);
      const body = DrainRequestSchema.safeParse(await readJson(req));
      if (!body.success) throw new HttpError(400, `bad request body: ${describeIssues(body.error)}`);
      const name = decodeURIComponent(m[1]!);
      if (!(await d.coordinator.drainWorker(name, body.data.now))) throw new HttpError(404, `no worker named "${name}" is connected`);
      return sendJson(res, 202, { name, draining: true, now: body.data.now });
    }
    if (path === '/api/v1/cloud' && method === 'GET') return sendJson(res, 200, d.latent?.cloud?.() ?? []);
    if (d.enrollment && (await d.enrollment.handle(req, res, url, () => this.requireAdmin(req)))) return;
    throw new HttpError(404, `no route ${method} ${path}`);
  }

  /** Why a queued build waits: no worker can run its builder, or they are busy; and what the cloud does about it. */
  private waitReason(row: BuildRow): string {
    const def = this.deps.builders.list().find((b) => b.name === row.builder)?.definition ?? null;
    if (!def) return `its builder "${row.builder}" has no valid definition`;
    // Volunteers' and other workers' side; the cloud's is said by the pool (its workers take a build only once it may go to the cloud).
    const sessions = [...this.deps.coordinator.connectedSessions()].filter((s) => !s.cloud);
    const base = whyUnrunnable(def, sessions) ?? 'every worker that can run it is busy or not accepting';
    const cloud = this.deps.latent?.waitReason?.(def, row);
    return cloud ? `${base}; ${cloud}` : base;
  }

  builderViews(): BuilderView[] {
    const sessions = [...this.deps.coordinator.connectedSessions()];
    return this.deps.builders.list().map(({ name, definition, error }) => {
      const runnable = definition !== null && sessions.some((s) => executorFor(definition, s) !== null);
      let unrunnable: string | null = null;
      if (!definition) unrunnable = 'its builder file has never been valid';
      else if (!runnable) {
        unrunnable = whyUnrunnable(definition, sessions);
        if (this.deps.latent?.size) {
          unrunnable += this.deps.latent.couldRun(definition) ? '; a latent worker is started for its queued builds' : '; no latent worker fits it either';
        }
      }
      return {
        name,
        description: definition?.description ?? '',
        requires: definition?.requires ?? { labels: [], executor: 'any' },
        source: definition?.source ? { git: redactUrl(definition.source.git), branch: definition.source.branch, ...this.deps.sources?.status(name) } : null,
        error,
        runnable,
        unrunnable,
      };
    });
  }

  private readonly throttle = new AuthThrottle();

  private requireAdmin(req: IncomingMessage): void {
    const h = req.headers.authorization ?? '';
    const m = /^Bearer\s+(\S+)$/i.exec(h);
    if (!m) throw new HttpError(401, 'this request needs "Authorization: Bearer <admin token>" (see DATA/admin.token)');
    const from = this.deps.addressOf?.(req) ?? req.socket.remoteAddress ?? 'unknown';
    const { waitMs, why } = this.throttle.blockedForName(from, 'admin');
    if (waitMs > 0) throw new HttpError(429, `${why.replace('logins as "admin"', 'admin tokens')}; try again in ${Math.ceil(waitMs / 1000)}s`);
    if (!secretsEqual(m[1]!, this.deps.adminToken)) {
      this.throttle.failName(from, 'admin');
      throw new HttpError(403, 'wrong admin token');
    }
    this.throttle.succeeded(from, 'admin');
  }

  /** Whether a request carries the admin token (for `public: false` reads on the events socket); throws HttpError. */
  checkRead(req: IncomingMessage): void {
    if (this.deps.public === false) this.requireAdmin(req);
  }

  private serveStatic(req: IncomingMessage, path: string, res: ServerResponse): void {
    const files = this.deps.staticDir ? (this.staticFiles ??= new StaticFiles(this.deps.staticDir)) : null;
    if (!files?.serve(req, path, res)) throw new HttpError(404, 'the dashboard is not built (run `npm run build`)');
  }
}

/** Sent with every answer: no framing by other sites, and the dashboard's own content policy. */
export const SECURITY_HEADERS: Record<string, string> = {
  'x-frame-options': 'DENY',
  'content-security-policy': "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; object-src 'none'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'",
  'x-content-type-options': 'nosniff',
  'referrer-policy': 'no-referrer',
};

const LOOPBACK = /^(127\.\d+\.\d+\.\d+|::1|localhost)$/i;

/**
 * Why a request to a master listening on a loopback address is refused: its Host header is
 * not 127.0.0.1:PORT, localhost:PORT or [::1]:PORT. A web page the user visits may resolve
 * its own name to 127.0.0.1 (DNS rebinding) and then talk to the master as same-origin; its
 * requests still name that page's host, and get 421. Null when the Host is fine or the
 * master does not listen on loopback (then the network decides who reaches it).
 */
export function hostRefusal(host: string | undefined, listenHost: string, port: number): string | null {
  if (!LOOPBACK.test(listenHost)) return null;
  const h = (host ?? '').toLowerCase();
  const ok = [`127.0.0.1:${port}`, `localhost:${port}`, `[::1]:${port}`];
  if (/^127\./.test(listenHost)) ok.push(`${listenHost}:${port}`);
  if (ok.includes(h)) return null;
  // An IP literal cannot be rebound: a page whose origin is an address reached that address,
  // not a name of its own. This is how a local-vm guest dials the host (10.0.2.2, which QEMU's
  // user network maps to the host's loopback).
  const name = /^\[([0-9a-f:.]+)\](?::\d+)?$/.exec(h)?.[1] ?? /^([0-9.]+)(?::\d+)?$/.exec(h)?.[1];
  if (name !== undefined && isIP(name) !== 0) return null;
  return `refused: the Host header "${host ?? ''}" is not this master's loopback address 127.0.0.1:${port} (a page of another site cannot reach it)`;
}

function parseCaps(text: string): Capabilities | null {
  try { return JSON.parse(text) as Capabilities; } catch { return null; }
}

function intParam(url: URL, name: string, dflt: number, min: number, max: number): number {
  const v = url.searchParams.get(name);
  if (v === null || v === '') return dflt;
  const n = Number(v);
  if (!Number.isInteger(n) || n < min || n > max) throw new HttpError(400, `${name} must be an integer from ${min} to ${max}`);
  return n;
}

export function sendJson(res: ServerResponse, status: number, body: unknown): void {
  const text = JSON.stringify(body);
  res.writeHead(status, { 'content-type': 'application/json; charset=utf-8', 'content-length': Buffer.byteLength(text) });
  res.end(text);
}

export async function readJson(req: IncomingMessage): Promise<unknown> {
  const chunks: Buffer[] = [];
  let size = 0;
  for await (const c of req) {
    size += (c as Buffer).length;
    if (size > MAX_BODY) throw new HttpError(413, `request body exceeds ${MAX_BODY} bytes`);
    chunks.push(c as Buffer);
  }
  const text = Buffer.concat(chunks).toString('utf8').trim();
  if (!text) return {};
  try { return JSON.parse(text); } catch (e) { throw new HttpError(400, `request body is not JSON: ${(e as Error).message}`); }
}

/** `GET /api/v1/version`. */
export function versionInfo(now: Date): VersionInfo {
  const oldest = oldestAcceptedProtocol(now);
  return {
    version: MASTER_VERSION,
    workerProtocols: { oldest, newest: PROTOCOL_VERSION, oldestUntil: oldest < PROTOCOL_VERSION ? OLDEST_WORKER_PROTOCOL_UNTIL : null },
  };
}
