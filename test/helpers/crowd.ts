import { generateKeyPairSync, randomBytes, sign, type KeyObject } from 'node:crypto';
import { mkdirSync, writeFileSync } from 'node:fs';
import { join as joinPath } from 'node:path';
import WebSocket from 'ws';
import { joinSignedText, type JoinResponse } from '../../protocol/join.js';
import { PROTOCOL_VERSION } from '../../protocol/version.js';
import { sha256Hex } from '../../master/tokens.js';
import { startWorker, type WorkerHandle } from '../../worker/agent.js';
import type { MasterOptions } from '../../master/master.js';
import { cleanup, tempDir, testMaster, until, type TestMaster } from './cluster.js';

/**
 * What `crowdbake join` does on a volunteer's computer ([crowd], protocol/join.ts), done by
 * the test with node:crypto: a volunteer identity key, a worker key and token secret, and
 * `POST /api/v1/join`.
 */

export interface Identity { key: string; privateKey: KeyObject }

export function identity(): Identity {
  const { publicKey, privateKey } = generateKeyPairSync('ed25519');
  return { key: publicKey.export({ type: 'spki', format: 'der' }).toString('base64'), privateKey };
}

export interface Joined { status: number; body: JoinResponse & { error?: string; reason?: string }; token: string }

export async function join(
  m: { url: string }, o: { worker: string; code?: string; who?: Identity; displayName?: string; listed?: boolean; signWith?: Identity; workerKey?: Identity },
): Promise<Joined> {
  const who = o.who ?? identity();
  const secret = randomBytes(32).toString('base64url');
  const workerKey = (o.workerKey ?? identity()).key;
  const req = { worker: o.worker, tokenHash: sha256Hex(secret), workerKey, ...(o.code ? { code: o.code } : {}) };
  const volunteerSignature = sign(null, Buffer.from(joinSignedText(req)), (o.signWith ?? who).privateKey).toString('base64');
  const r = await fetch(`${m.url}/api/v1/join`, {
    method: 'POST', headers: { 'content-type': 'application/json' },
    body: JSON.stringify({ ...req, volunteerKey: who.key, volunteerSignature, displayName: o.displayName ?? 'Ada', listed: o.listed ?? true }),
  });
  return { status: r.status, body: (await r.json()) as Joined['body'], token: `cbw1.${o.worker}.${secret}` };
}

export async function admin<T>(m: TestMaster, method: string, path: string, body?: unknown): Promise<{ status: number; body: T }> {
  const r = await fetch(`${m.url}${path}`, {
    method, headers: { authorization: `Bearer ${m.adminToken}`, 'content-type': 'application/json' },
    ...(body !== undefined ? { body: JSON.stringify(body) } : {}),
  });
  return { status: r.status, body: (await r.json()) as T };
}

/** A test master whose crowdbake.yml holds `yaml`; `opts` go to startMaster. */
export async function crowdMaster(builders: Record<string, string>, yaml: string, dirs: string[], opts: Partial<MasterOptions> = {}): Promise<TestMaster> {
  const dir = tempDir('crowd');
  dirs.push(dir);
  mkdirSync(joinPath(dir, 'config'), { recursive: true });
  writeFileSync(joinPath(dir, 'config', 'crowdbake.yml'), yaml);
  return testMaster(builders, { ...opts, dir });
}

/** An invite made over REST; returns its code. */
export async function inviteCode(m: TestMaster, body: Record<string, unknown> = {}): Promise<{ id: string; code: string; link: string }> {
  const r = await admin<{ id: string; code: string; link: string; error?: string }>(m, 'POST', '/api/v1/invites', body);
  if (r.status !== 201) throw new Error(`POST /api/v1/invites: ${r.status} ${r.body.error}`);
  return r.body;
}

/** A real worker agent (host executor) using the token it made when it joined. */
export async function joinedWorker(m: TestMaster, token: string, dirs: string[], opts: { tamper?: boolean } = {}): Promise<WorkerHandle> {
  const dir = tempDir('crowd-worker');
  dirs.push(dir);
  if (opts.tamper) writeFileSync(joinPath(dir, 'tamper'), '');
  return startWorker({ preferences: { when: 'always' }, idleSource: 'none', master: m.url, token, dataDir: dir, executor: 'host', labels: [], log: () => undefined });
}

const CAPS = { os: 'test', platform: 'linux', arch: 'x64', cpus: 1, memoryBytes: 1e9, diskBytes: 1e9, executors: ['host'], labels: [] as string[], maxBuilds: 1, virtualization: false };

export interface Frame { type: string; buildId?: number; message?: string; fatal?: boolean; spec?: { builder: string; steps: { env: Record<string, string> }[] } }

/** A worker as a raw WebSocket: records every frame the master sends it (to show what reached it). */
export async function rawWorker(m: { url: string }, name: string, token: string, opts: { waitWelcome?: boolean } = {}) {
  const ws = new WebSocket(`${m.url.replace('http', 'ws')}/api/v1/worker`);
  const inbox: Frame[] = [];
  const closed = new Promise<{ code: number; reason: string }>((ok) => ws.on('close', (code, reason) => ok({ code, reason: reason.toString() })));
  ws.on('message', (d) => inbox.push(JSON.parse(d.toString()) as Frame));
  ws.on('error', () => undefined);
  await new Promise((ok) => ws.once('open', ok));
  ws.send(JSON.stringify({ type: 'hello', protocol: PROTOCOL_VERSION, name, token, agentVersion: 'test', capabilities: CAPS }));
  if (opts.waitWelcome !== false) await until(`${name}'s welcome`, () => inbox.find((f) => f.type === 'welcome' || f.fatal));
  return { ws, inbox, closed };
}

export { cleanup, until };
