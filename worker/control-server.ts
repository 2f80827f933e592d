import { randomBytes, timingSafeEqual, createHash } from 'node:crypto';
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { renameSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import {
  IdleReportSchema, PreferencesPatchSchema, SnoozeRequestSchema, type AgentStatus, type IdleReport, type Preferences, type PreferencesPatch,
} from '../protocol/control-api.js';
import { describeIssues } from '../protocol/parse.js';
import type { HistoryStore } from './history-store.js';

/** What the control API drives; implemented by the agent. */
export interface AgentControl {
  status(): AgentStatus;
  pause(): Promise<void>;
  resume(): Promise<void>;
  snooze(ms: number): Promise<void>;
  updatePreferences(patch: Partial<Preferences>): Promise<Preferences>;
  reportIdle(report: IdleReport): boolean;
  history: HistoryStore;
}

/** Where a running agent's control API is, DATA/control.json (mode 0600). */
export interface ControlFile {
  url: string;
  secret: string;
  pid: number;
}

class HttpError extends Error {
  constructor(readonly status: number, message: string) { super(message); }
}

/**
 * The agent's local control API, like BOINC's GUI RPC: HTTP on 127.0.0.1 only, every request
 * needs the per-user secret from DATA/control.json as a bearer token.
 */
export async function startControlServer(dataDir: string, agent: AgentControl, port = 0): Promise<{ url: string; close(): Promise<void> }> {
  const secret = randomBytes(32).toString('base64url');
  const server: Server = createServer((req, res) => {
    handle(req, res, agent, secret).catch((e: unknown) => {
      const status = e instanceof HttpError ? e.status : 500;
      send(res, status, { error: (e as Error).message });
    });
  });
  await new Promise<void>((ok, fail) => {
    server.once('error', fail);
    server.listen(port, '127.0.0.1', () => ok());
  });
  const url = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
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

async function handle(req: IncomingMessage, res: ServerResponse, agent: AgentControl, secret: string): Promise<void> {
  const auth = /^Bearer\s+(\S+)$/i.exec(req.headers.authorization ?? '')?.[1] ?? '';
  const h = (s: string) => createHash('sha256').update(s).digest();
  if (!timingSafeEqual(h(auth), h(secret))) throw new HttpError(401, 'this needs the agent secret from DATA/control.json as "Authorization: Bearer …"');
  const url = new URL(req.url ?? '/', 'http://x');
  const route = `${req.method} ${url.pathname}`;
  let m: RegExpExecArray | null;
  switch (route) {
    case 'GET /api/v1/status': return send(res, 200, agent.status());
    case 'POST /api/v1/pause': await agent.pause(); return send(res, 200, agent.status());
    case 'POST /api/v1/resume': await agent.resume(); return send(res, 200, agent.status());
    case 'POST /api/v1/snooze': {
      const body = parseBody(SnoozeRequestSchema, await readJson(req));
      await agent.snooze(body.duration);
      return send(res, 200, agent.status());
    }
    case 'GET /api/v1/preferences': return send(res, 200, agent.status().preferences);
    case 'PATCH /api/v1/preferences': {
      const p = parseBody(PreferencesPatchSchema, await readJson(req));
      return send(res, 200, await agent.updatePreferences(toPreferences(p)));
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
  }
  if (req.method === 'GET' && (m = /^\/api\/v1\/history\/(\d+)(\/log)?$/.exec(url.pathname))) {
    const id = Number(m[1]);
    const entry = agent.history.get(id);
    if (!entry) throw new HttpError(404, `no local build ${id}`);
    if (!m[2]) return send(res, 200, entry);
    res.writeHead(200, { 'content-type': 'text/plain; charset=utf-8' });
    const stream = agent.history.readLog(id);
    if (stream) stream.pipe(res); else res.end();
    return;
  }
  throw new HttpError(404, `no route ${route}`);
}

function toPreferences(p: ReturnType<typeof PreferencesPatchSchema.parse>): Partial<Preferences> {
  const out: Partial<Preferences> = {};
  if (p.when !== undefined) out.when = p.when;
  if (p.idleAfter !== undefined) out.idleAfterMs = p.idleAfter;
  if (p.schedule !== undefined) out.schedule = p.schedule;
  if (p.onBattery !== undefined) out.onBattery = p.onBattery;
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
  res.writeHead(status, { 'content-type': 'application/json; charset=utf-8', 'content-length': Buffer.byteLength(text) });
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
