import { randomBytes, timingSafeEqual, createHash } from 'node:crypto';
import { createReadStream, existsSync, readFileSync, renameSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { extname, join, normalize } from 'node:path';
import { fileURLToPath } from 'node:url';
import {
  DrainRequestSchema, IdleReportSchema, PreferencesPatchSchema, SnoozeRequestSchema, type AgentStatus, type HistoryEntry, type IdleReport, type Preferences, type PreferencesPatch,
} from '../protocol/control-api.js';
import { describeIssues } from '../protocol/parse.js';
import type { HistoryStore } from './history-store.js';
import { changeShare, joinFromLink, JoinRequestSchema, leave, listProjectRows, ShareRequestSchema } from './control-projects.js';

/** What the control API drives; implemented by the agent. */
export interface AgentControl {
  status(): AgentStatus;
  pause(): Promise<void>;
  resume(): Promise<void>;
  snooze(ms: number): Promise<void>;
  updatePreferences(patch: Partial<Preferences>): Promise<Preferences>;
  reportIdle(report: IdleReport): boolean;
  /** Runs the build of local history entry `id` again on this machine, outside the master; resolves to the new entry. */
  rerun(id: number): Promise<HistoryEntry>;
  history: HistoryStore;
  /** `crowdbake drain`: leave after the running builds (or, `now`, give them back); absent where the worker cannot. */
  drain?(now: boolean): void;
}

/** Where a running agent's control API is, DATA/control.json (mode 0600). */
export interface ControlFile {
  url: string;
  secret: string;
  pid: number;
}

export interface ControlServerOptions {
  port?: number;
  /** The built renderer (dist/renderer) served at `/` in its volunteer mode; null serves no pages. */
  staticDir?: string | null;
}

class HttpError extends Error {
  constructor(readonly status: number, message: string) { super(message); }
}

const DEFAULT_STATIC = fileURLToPath(new URL('../renderer/', import.meta.url));
/** A login ticket from `POST /api/v1/ui-tickets` is good once, for this long. */
const TICKET_TTL_MS = 60_000;
const MIME: Record<string, string> = {
  '.html': 'text/html; charset=utf-8', '.js': 'text/javascript; charset=utf-8', '.css': 'text/css; charset=utf-8',
  '.map': 'application/json', '.svg': 'image/svg+xml', '.png': 'image/png',
};
const PAGE_CSP = "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; object-src 'none'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'";

const digest = (s: string) => createHash('sha256').update(s).digest();
const same = (a: string, b: string) => timingSafeEqual(digest(a), digest(b));

/**
 * The agent's local control API, like BOINC's GUI RPC: HTTP on 127.0.0.1 only. Programs
 * (the CLI, the desktop app) send the per-start secret from DATA/control.json as a bearer
 * token. Browsers get the volunteer pages at `/` and sign in once through a single-use
 * ticket (`crowdbake ui`), which becomes an HttpOnly SameSite=Strict session cookie. Any
 * request whose Host header is not this loopback address is refused (DNS rebinding), and a
 * cookie-signed write must come from this origin.
 */
export async function startControlServer(dataDir: string, agent: AgentControl, options: ControlServerOptions | number = {}): Promise<{ url: string; close(): Promise<void> }> {
  const opts = typeof options === 'number' ? { port: options } : options;
  const secret = randomBytes(32).toString('base64url');
  const staticDir = opts.staticDir === undefined ? (existsSync(join(DEFAULT_STATIC, 'index.html')) ? DEFAULT_STATIC : null) : opts.staticDir;
  const ctx: Ctx = { agent, dataDir, secret, port: 0, staticDir, tickets: new Map(), sessions: new Set() };
  const server: Server = createServer((req, res) => {
    handle(req, res, ctx).catch((e: unknown) => {
      const status = e instanceof HttpError ? e.status : 500;
      if (res.headersSent) { res.destroy(); return; }
      send(res, status, { error: (e as Error).message });
    });
  });
  await new Promise<void>((ok, fail) => {
    server.once('error', fail);
    server.listen(opts.port ?? 0, '127.0.0.1', () => ok());
  });
  ctx.port = (server.address() as AddressInfo).port;
  const url = `http://127.0.0.1:${ctx.port}`;
  const file = join(dataDir, 'control.json');
  const tmp = `${file}.tmp`;
  writeFileSync(tmp, JSON.stringify({ url, secret, pid: process.pid } satisfies ControlFile), { mode: 0o600 });
  renameSync(tmp, file);
  return {
    url,
    close: async () => {
      rmSync(file, { force: true });
      server.closeAllConnections();
      await new Promise<void>((ok) => server.close(() => ok()));
    },
  };
}

interface Ctx {
  agent: AgentControl;
  dataDir: string;
  secret: string;
  port: number;
  staticDir: string | null;
  /** Unused login tickets and when they expire. */
  tickets: Map<string, number>;
  /** Browser sessions (cookie values) signed in since this start. */
  sessions: Set<string>;
}

const cookieName = (port: number) => `crowdbake_agent_${port}`;

/** The Host header names this server on a loopback address (no DNS name other than localhost). */
export function isLoopbackHost(host: string | undefined, port: number): boolean {
  if (!host) return false;
  const h = host.toLowerCase();
  return h === `127.0.0.1:${port}` || h === `localhost:${port}` || h === `[::1]:${port}`;
}

function cookieSession(req: IncomingMessage, port: number): string | null {
  const name = cookieName(port);
  for (const part of (req.headers.cookie ?? '').split(';')) {
    const [k, ...v] = part.trim().split('=');
    if (k === name) return v.join('=');
  }
  return null;
}

async function handle(req: IncomingMessage, res: ServerResponse, ctx: Ctx): Promise<void> {
  if (!isLoopbackHost(req.headers.host, ctx.port)) {
    throw new HttpError(421, `refused: the Host header "${req.headers.host ?? ''}" is not this agent's loopback address 127.0.0.1:${ctx.port}`);
  }
  const url = new URL(req.url ?? '/', 'http://x');
  if (!url.pathname.startsWith('/api/')) return servePage(req, res, url, ctx);

  const bearer = /^Bearer\s+(\S+)$/i.exec(req.headers.authorization ?? '')?.[1];
  if (bearer !== undefined) {
    if (!same(bearer, ctx.secret)) throw new HttpError(401, 'wrong agent secret (see DATA/control.json)');
  } else {
    const session = cookieSession(req, ctx.port);
    if (session === null || ![...ctx.sessions].some((s) => same(s, session))) {
      throw new HttpError(401, 'this needs the agent secret from DATA/control.json as "Authorization: Bearer …", or a browser signed in with `crowdbake ui`');
    }
    if (req.method !== 'GET' && req.method !== 'HEAD') {
      const origin = req.headers.origin;
      if (!origin || !isLoopbackHost(origin.replace(/^http:\/\//, ''), ctx.port) || !origin.startsWith('http://')) {
        throw new HttpError(403, `refused: a change from the browser must come from this agent's own page (Origin ${origin ?? 'missing'})`);
      }
    }
    if (url.pathname === '/api/v1/ui-tickets') throw new HttpError(403, 'login tickets are issued to the agent secret only');
  }
  return route(req, res, url, ctx);
}

async function route(req: IncomingMessage, res: ServerResponse, url: URL, ctx: Ctx): Promise<void> {
  const { agent } = ctx;
  const r = `${req.method} ${url.pathname}`;
  let m: RegExpExecArray | null;
  switch (r) {
    case 'GET /api/v1/status': return send(res, 200, agent.status());
    case 'POST /api/v1/pause': await agent.pause(); return send(res, 200, agent.status());
    case 'POST /api/v1/resume': await agent.resume(); return send(res, 200, agent.status());
    case 'POST /api/v1/snooze': {
      const body = parseBody(SnoozeRequestSchema, await readJson(req));
      await agent.snooze(body.duration);
      return send(res, 200, agent.status());
    }
    case 'POST /api/v1/drain': {
      const body = parseBody(DrainRequestSchema, await readJson(req));
      if (!agent.drain) throw new HttpError(409, 'this worker cannot drain (a BuildBot worker leaves when its master says so)');
      agent.drain(body.now);
      return send(res, 202, { draining: true, now: body.now });
    }
    case 'GET /api/v1/preferences': return send(res, 200, agent.status().preferences);
    case 'PATCH /api/v1/preferences': {
      const p = parseBody(PreferencesPatchSchema, await readJson(req));
      return send(res, 200, await agent.updatePreferences(toPreferences(p, agent.status().preferences)));
    }
    case 'POST /api/v1/idle': {
      if (!agent.reportIdle(parseBody(IdleReportSchema, await readJson(req)))) {
        throw new HttpError(409, 'this agent does not use the app as its idle source (start it with --idle-source app)');
      }
      return send(res, 204, null);
    }
    case 'GET /api/v1/history': {
      const limit = Math.min(Math.max(Number(url.searchParams.get('limit') ?? 100) || 100, 1), 1000);
      return send(res, 200, agent.history.list(limit, url.searchParams.get('builder') ?? undefined));
    }
    case 'POST /api/v1/ui-tickets': {
      const now = Date.now();
      for (const [t, until] of ctx.tickets) if (until < now) ctx.tickets.delete(t);
      const ticket = randomBytes(24).toString('base64url');
      ctx.tickets.set(ticket, now + TICKET_TTL_MS);
      return send(res, 201, { url: `http://127.0.0.1:${ctx.port}/ui/login?ticket=${ticket}`, expiresInMs: TICKET_TTL_MS });
    }
    case 'POST /api/v1/logout': {
      const s = cookieSession(req, ctx.port);
      if (s !== null) ctx.sessions.delete(s);
      res.writeHead(204, { 'set-cookie': `${cookieName(ctx.port)}=; HttpOnly; SameSite=Strict; Path=/; Max-Age=0` });
      res.end();
      return;
    }
  }
  if (url.pathname === '/api/v1/projects' || url.pathname.startsWith('/api/v1/projects/')) return routeProjects(req, res, url, ctx);
  if (req.method === 'POST' && (m = /^\/api\/v1\/history\/(\d+)\/rerun$/.exec(url.pathname))) {
    const id = Number(m[1]);
    if (!agent.history.get(id)) throw new HttpError(404, `no local build ${id}`);
    let entry: HistoryEntry;
    try {
      entry = await agent.rerun(id);
    } catch (e) {
      throw new HttpError(409, `cannot run local build ${id} again: ${(e as Error).message}`);
    }
    return send(res, 201, entry);
  }
  if (req.method === 'GET' && (m = /^\/api\/v1\/history\/(\d+)(\/log)?$/.exec(url.pathname))) {
    const id = Number(m[1]);
    const entry = agent.history.get(id);
    if (!entry) throw new HttpError(404, `no local build ${id}`);
    if (!m[2]) return send(res, 200, entry);
    return sendLog(res, agent.history.logPath(id), url.searchParams.get('from'));
  }
  throw new HttpError(404, `no route ${r}`);
}

/** The joined projects: list, join (the volunteer's pasted link), change a share, leave. */
async function routeProjects(req: IncomingMessage, res: ServerResponse, url: URL, ctx: Ctx): Promise<void> {
  const live = ctx.agent.status().projects;
  if (url.pathname === '/api/v1/projects') {
    if (req.method === 'GET') return send(res, 200, listProjectRows(ctx.dataDir, live));
    if (req.method === 'POST') {
      const body = parseBody(JoinRequestSchema, await readJson(req));
      try { return send(res, 201, await joinFromLink(ctx.dataDir, body)); } catch (e) { throw new HttpError(409, (e as Error).message); }
    }
    throw new HttpError(405, `${req.method} is not allowed on /api/v1/projects`);
  }
  const name = decodeURIComponent(url.pathname.slice('/api/v1/projects/'.length));
  try {
    if (req.method === 'PATCH') return send(res, 200, changeShare(ctx.dataDir, name, parseBody(ShareRequestSchema, await readJson(req)).share, live));
    if (req.method === 'DELETE') return send(res, 200, leave(ctx.dataDir, name, live));
  } catch (e) {
    if (e instanceof HttpError) throw e;
    throw new HttpError(404, (e as Error).message);
  }
  throw new HttpError(405, `${req.method} is not allowed on a project`);
}

/** The log from byte `from` on (all of it without); `x-log-size` says where the next read starts. */
function sendLog(res: ServerResponse, path: string, fromParam: string | null): void {
  let from = 0;
  if (fromParam !== null) {
    if (!/^\d+$/.test(fromParam)) throw new HttpError(400, `from must be a byte offset (a whole number), not "${fromParam}"`);
    from = Number(fromParam);
  }
  const size = existsSync(path) ? statSync(path).size : 0;
  const start = Math.min(from, size);
  res.writeHead(200, { 'content-type': 'text/plain; charset=utf-8', 'x-log-size': String(size), 'cache-control': 'no-store', 'content-length': String(size - start) });
  if (size - start === 0) { res.end(); return; }
  createReadStream(path, { start, end: size - 1 }).pipe(res);
}

/** The renderer's files; index.html marked so the renderer starts in its volunteer mode. `/ui/login` trades a ticket for the session cookie. */
function servePage(req: IncomingMessage, res: ServerResponse, url: URL, ctx: Ctx): void {
  if (req.method !== 'GET' && req.method !== 'HEAD') throw new HttpError(405, `${req.method} is not allowed here`);
  if (url.pathname === '/ui/login') {
    const ticket = url.searchParams.get('ticket') ?? '';
    const until = ctx.tickets.get(ticket);
    ctx.tickets.delete(ticket);
    if (until === undefined || until < Date.now()) {
      res.writeHead(403, { 'content-type': 'text/plain; charset=utf-8', 'cache-control': 'no-store' });
      res.end('This sign-in link is used up or expired. Run `crowdbake ui` again for a new one.\n');
      return;
    }
    const session = randomBytes(32).toString('base64url');
    ctx.sessions.add(session);
    res.writeHead(303, {
      location: '/',
      'set-cookie': `${cookieName(ctx.port)}=${session}; HttpOnly; SameSite=Strict; Path=/`,
      'cache-control': 'no-store',
      'referrer-policy': 'no-referrer',
    });
    res.end();
    return;
  }
  const dir = ctx.staticDir;
  if (!dir) throw new HttpError(404, 'the pages are not built (run `npm run build`)');
  const rel = normalize(decodeURIComponent(url.pathname)).replace(/^(\.\.[/\\])+/, '');
  let file = join(dir, rel);
  if (!file.startsWith(dir) || !existsSync(file) || statSync(file).isDirectory()) file = join(dir, 'index.html');
  if (!existsSync(file)) throw new HttpError(404, 'the pages are not built (run `npm run build`)');
  const headers = { 'x-content-type-options': 'nosniff', 'referrer-policy': 'no-referrer', 'cache-control': 'no-cache' };
  if (file.endsWith('index.html')) {
    const html = readFileSync(file, 'utf8').replace('<head>', '<head>\n    <meta name="crowdbake-mode" content="agent">');
    res.writeHead(200, { ...headers, 'content-type': MIME['.html']!, 'content-security-policy': PAGE_CSP, 'x-frame-options': 'DENY' });
    res.end(html);
    return;
  }
  res.writeHead(200, { ...headers, 'content-type': MIME[extname(file)] ?? 'application/octet-stream' });
  createReadStream(file).pipe(res);
}

function toPreferences(p: ReturnType<typeof PreferencesPatchSchema.parse>, current: Preferences): Partial<Preferences> {
  const out: Partial<Preferences> = {};
  if (p.when !== undefined) out.when = p.when;
  if (p.idleAfter !== undefined) out.idleAfterMs = p.idleAfter;
  if (p.schedule !== undefined) out.schedule = p.schedule;
  if (p.onBattery !== undefined) out.onBattery = p.onBattery;
  if (p.weekSchedule !== undefined) out.weekSchedule = p.weekSchedule;
  if (p.whileHere !== undefined) out.whileHere = p.whileHere;
  if (p.hereCpus !== undefined || p.hereCpuPercent !== undefined) {
    out.hereLimits = { cpus: p.hereCpus !== undefined ? p.hereCpus : current.hereLimits.cpus, cpuPercent: p.hereCpuPercent !== undefined ? p.hereCpuPercent : current.hereLimits.cpuPercent };
  }
  if (p.otherCpuGrace !== undefined) out.otherCpuGraceMs = p.otherCpuGrace;
  if (p.maxTemperatureC !== undefined) out.maxTemperatureC = p.maxTemperatureC;
  if (p.pauseAfterCurrent !== undefined) out.pauseAfterCurrent = p.pauseAfterCurrent;
  if (p.startPaused !== undefined) out.startPaused = p.startPaused;
  if (p.maxOtherCpuPercent !== undefined) out.maxOtherCpuPercent = p.maxOtherCpuPercent;
  if (p.cpus !== undefined) out.cpus = p.cpus;
  if (p.memory !== undefined) out.memoryBytes = p.memory;
  if (p.disk !== undefined) out.diskBytes = p.disk;
  return out;
}

export type { PreferencesPatch };

function parseBody<T>(schema: { safeParse(v: unknown): { success: true; data: T } | { success: false; error: import('zod').ZodError } }, raw: unknown): T {
  const r = schema.safeParse(raw);
  if (!r.success) throw new HttpError(400, `bad request: ${describeIssues(r.error)}`);
  return r.data;
}

function send(res: ServerResponse, status: number, body: unknown): void {
  if (status === 204) { res.writeHead(204); res.end(); return; }
  const text = JSON.stringify(body);
  res.writeHead(status, { 'content-type': 'application/json; charset=utf-8', 'content-length': Buffer.byteLength(text), 'cache-control': 'no-store' });
  res.end(text);
}

async function readJson(req: IncomingMessage): Promise<unknown> {
  let text = '';
  for await (const c of req) {
    text += c;
    if (text.length > 64 * 1024) throw new HttpError(413, 'request body too large');
  }
  if (!text.trim()) return {};
  try { return JSON.parse(text); } catch (e) { throw new HttpError(400, `request body is not JSON: ${(e as Error).message}`); }
}
