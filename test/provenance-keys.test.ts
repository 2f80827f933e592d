import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { createHash, createPrivateKey, createPublicKey, type KeyObject } from 'node:crypto';
import { readFileSync, readdirSync, statSync, writeFileSync } from 'node:fs';
import { join as joinPath } from 'node:path';
import WebSocket from 'ws';
import type { BuildView } from '../protocol/api.js';
import { BuildSpecSchema } from '../protocol/build-spec.js';
import { FarmSummarySchema, ProvenanceBundleSchema, type ProvenanceBundle } from '../protocol/provenance.js';
import { PROTOCOL_VERSION } from '../protocol/version.js';
import { startWorker } from '../worker/agent.js';
import { listProjects } from '../worker/projects.js';
import { attemptStatement, signStatement } from '../worker/provenance-signer.js';
import { CLI, tempDir, testMaster, type TestMaster } from './helpers/cluster.js';
import { cleanup, crowdMaster, until } from './helpers/crowd.js';

/**
 * [provenance] Keys rotated and revoked, with the real CLI: a worker joined with
 * `crowdbake join` signs with the key it made; `crowdbake projects rotate-key` enrolls a new
 * one; `crowdbake token revoke-key` retires it. Statements signed with a retired key are
 * refused from then on; those accepted before stay verifiable, their bundles naming when
 * the key was retired.
 */

const BUILDER = 'requires: { executor: host }\nprovenance: required\nsteps:\n  - run: printf "same bytes\\n" > out.txt\nartifacts: [out.txt]\n';
const sha = (b: Buffer) => createHash('sha256').update(b).digest('hex');
/** The real CLI in its own process, without blocking this one (the master runs here). */
function cli(...args: string[]): Promise<{ status: number | null; stdout: string; stderr: string }> {
  const child = spawn(process.execPath, [CLI, ...args], { stdio: ['ignore', 'pipe', 'pipe'] });
  let stdout = '';
  let stderr = '';
  child.stdout.on('data', (c: Buffer) => { stdout += c.toString(); });
  child.stderr.on('data', (c: Buffer) => { stderr += c.toString(); });
  return new Promise((ok) => child.on('close', (status) => ok({ status, stdout, stderr })));
}

async function download(m: TestMaster, id: number, dir: string, tag: string): Promise<{ file: string; bundle: string; parsed: ProvenanceBundle }> {
  const file = joinPath(dir, `${tag}.out.txt`);
  writeFileSync(file, Buffer.from(await (await fetch(`${m.url}/api/v1/builds/${id}/artifacts/out.txt`)).arrayBuffer()));
  const text = await (await fetch(`${m.url}/api/v1/builds/${id}/artifacts/out.txt/provenance`)).text();
  const bundle = joinPath(dir, `${tag}.provenance.json`);
  writeFileSync(bundle, text);
  return { file, bundle, parsed: ProvenanceBundleSchema.parse(JSON.parse(text)) };
}

const attemptOf = (b: ProvenanceBundle) => FarmSummarySchema.parse(JSON.parse(Buffer.from(b.summary.payload, 'base64').toString())).predicate.crowdbake.attempts[0]!;

/** The worker's token and a key, as a raw socket: runs one build and signs its statement with `key`. */
async function signOnce(m: TestMaster, worker: string, token: string, key: KeyObject, buildId: number): Promise<void> {
  const ws = new WebSocket(`${m.url.replace('http', 'ws')}/api/v1/worker`);
  const inbox: { type: string; buildId?: number; attempt?: number; spec?: unknown }[] = [];
  ws.on('message', (d) => inbox.push(JSON.parse(d.toString())));
  ws.on('error', () => undefined);
  await new Promise((ok) => ws.once('open', ok));
  const send = (msg: Record<string, unknown>) => ws.send(JSON.stringify(msg));
  send({ type: 'hello', protocol: PROTOCOL_VERSION, name: worker, token, agentVersion: 't', capabilities: { os: 't', platform: 'linux', arch: 'x64', cpus: 1, memoryBytes: 1e9, diskBytes: 1e9, executors: ['host'], labels: [], maxBuilds: 1, virtualization: false } });
  const a = await until(`the assignment of ${buildId}`, () => inbox.find((f) => f.type === 'assign' && f.buildId === buildId));
  const bytes = Buffer.from('same bytes\n');
  send({ type: 'accepted', buildId, attempt: a.attempt });
  send({ type: 'artifact', buildId, attempt: a.attempt, name: 'out.txt', size: bytes.length, sha256: sha(bytes), offset: 0, data: bytes.toString('base64'), last: true });
  const provenance = signStatement(attemptStatement({
    buildId, attempt: a.attempt!, worker, spec: BuildSpecSchema.parse(a.spec), executor: 'host', limits: {}, revision: null,
    artifacts: [{ name: 'out.txt', size: bytes.length, sha256: sha(bytes) }], startedOn: new Date().toISOString(), finishedOn: new Date().toISOString(), agentVersion: 't',
  }), key);
  send({ type: 'state', buildId, attempt: a.attempt, state: 'finished', result: 'success', message: null, provenance });
  await until('the refusal', () => inbox.find((f) => f.type === 'cancel' && f.buildId === buildId));
  ws.close();
}

test('a key rotated with `crowdbake projects rotate-key` or revoked with `crowdbake token revoke-key`: later statements with it are refused; earlier ones still verify, and their bundles say since when the key is retired', async (t) => {
  const dirs: string[] = [];
  const m = await crowdMaster({ one: BUILDER, late1: BUILDER, late2: BUILDER }, 'name: keys-farm\nenrollment: { mode: open, joinsPerHour: 100 }\n', dirs);
  const wdir = tempDir('keys-worker');
  const dl = tempDir('keys-dl');
  dirs.push(wdir, dl);
  let agent: Awaited<ReturnType<typeof startWorker>> | null = null;
  t.after(async () => { await agent?.close(); await m.close(); cleanup(...dirs); });
  const { link } = await m.get<{ link: string }>('/api/v1/enrollment');
  const joined = await cli('join', link, '--data', wdir, '--name', 'kw', '--display-name', 'Kay');
  assert.equal(joined.status, 0, joined.stderr);
  const project = joined.stdout.trim().split('\n').at(-1)!;
  const keyFile = joinPath(wdir, 'projects', `${project}.key`);
  const key1 = createPrivateKey(readFileSync(keyFile, 'utf8'));
  const token = listProjects(wdir)[0]!.token;
  const logs: string[] = [];
  agent = await startWorker({ dataDir: wdir, executor: 'host', idleSource: 'none', preferences: { when: 'always' }, labels: [], log: (l) => logs.push(l) });
  const farmKey = (await m.get<{ keyid: string }>('/.well-known/crowdbake/farm-key')).keyid;
  const verify = (d: { file: string; bundle: string }) => cli('verify', d.file, '--provenance', d.bundle, '--farm-key', farmKey, '--allow-unreplicated');

  // Signed with the key `crowdbake join` made.
  const b1 = await m.force('one');
  assert.equal((await m.waitFinished(b1, 30_000)).result, 'success');
  const d1 = await download(m, b1, dl, 'b1');
  assert.equal(d1.parsed.attestations[0]!.envelope.signatures[0]!.keyid, `sha256:${sha(createPublicKey(key1).export({ type: 'spki', format: 'der' }))}`);
  assert.equal(attemptOf(d1.parsed).keyRevokedAt, null);
  const v1 = await verify(d1);
  assert.equal(v1.status, 0, v1.stdout + v1.stderr);

  assert.match((await cli('token', 'list', '--data', m.dataDir)).stdout, new RegExp(`^kw\\tactive\\t.*\\tkey=sha256:${sha(createPublicKey(key1).export({ type: 'spki', format: 'der' }))}$`, 'm'));
  // A stolen token alone cannot enroll another key: the rotation must be signed by the current key.
  const thief = await fetch(`${m.url}/api/v1/workers/kw/key`, {
    method: 'POST', headers: { authorization: `Bearer ${token}`, 'content-type': 'application/json' },
    body: JSON.stringify({ workerKey: createPublicKey(createPrivateKey(readFileSync(keyFile, 'utf8'))).export({ type: 'spki', format: 'der' }).toString('base64'), signature: Buffer.alloc(64).toString('base64') }),
  });
  assert.deepEqual([thief.status, ((await thief.json()) as { error: string }).error], [403, 'signature: not made by the key enrolled for this worker']);

  // Rotation: the agent signs the next build with the new key.
  const rotated = await cli('projects', 'rotate-key', project, '--data', wdir);
  assert.equal(rotated.status, 0, rotated.stderr);
  assert.match(rotated.stdout, /signs with its new key from now on \(the old one retired at \d{4}-/);
  assert.notEqual(readFileSync(keyFile, 'utf8'), key1.export({ type: 'pkcs8', format: 'pem' }).toString());
  await until('the agent to take the new key', () => logs.some((l) => /its worker key changed; builds from now on are signed with the new one/.test(l)));
  const b2 = await m.force('one');
  assert.equal((await m.waitFinished(b2, 30_000)).result, 'success');
  const d2 = await download(m, b2, dl, 'b2');
  assert.notEqual(attemptOf(d2.parsed).workerKey, attemptOf(d1.parsed).workerKey);
  assert.equal((await verify(d2)).status, 0);

  // The first build's bundle now says its key was retired, after it was accepted: still good.
  const d1again = await download(m, b1, dl, 'b1-again');
  const a1 = attemptOf(d1again.parsed);
  assert.ok(a1.keyRevokedAt && a1.acceptedAt && a1.acceptedAt < a1.keyRevokedAt, JSON.stringify(a1));
  const v1again = await verify(d1again);
  assert.equal(v1again.status, 0, v1again.stdout);
  assert.match(v1again.stdout, /its key was revoked at .*, after this statement was accepted .*: still good/);

  // The retired key signs a later statement: refused.
  await agent.close();
  agent = null;
  const late1 = await m.force('late1');
  await signOnce(m, 'kw', token, key1, late1);
  const r1 = await until('late1 requeued', async () => { const b = await m.get<BuildView>(`/api/v1/builds/${late1}`); return b.state === 'queued' ? b : null; });
  assert.match(r1.message!, /sent a statement whose signature does not verify with the key enrolled for it/);

  // The maintainer revokes the current key: the next statement with it is refused too; b2's bundle names the revocation and still verifies.
  const revoked = await cli('token', 'revoke-key', 'kw', '--data', m.dataDir);
  assert.equal(revoked.status, 0, revoked.stderr);
  assert.match((await cli('token', 'list', '--data', m.dataDir)).stdout, /^kw\tactive\t.*\tkey=none$/m);
  const key2 = createPrivateKey(readFileSync(keyFile, 'utf8'));
  const late2 = await m.force('late2');
  await signOnce(m, 'kw', token, key2, late2);
  const r2 = await until('late2 requeued', async () => { const b = await m.get<BuildView>(`/api/v1/builds/${late2}`); return b.state === 'queued' ? b : null; });
  assert.match(r2.message!, /sent a signed statement, but no key is enrolled for it/);
  const d2again = await download(m, b2, dl, 'b2-again');
  assert.ok(attemptOf(d2again.parsed).keyRevokedAt);
  assert.equal((await verify(d2again)).status, 0);
  assert.ok(readdirSync(joinPath(m.dataDir, 'provenance')).includes('retired-keys.json'));
});

test('the farm key rotated with `crowdbake farm-key rotate`: the restarted master signs with the new key; a bundle downloaded before still verifies with the old pin, not the new one', async (t) => {
  const dirs: string[] = [];
  let m: TestMaster = await crowdMaster({ one: BUILDER }, 'name: rot-farm\nenrollment: { mode: open, joinsPerHour: 100 }\n', dirs);
  const wdir = tempDir('rot-worker');
  const dl = tempDir('rot-dl');
  dirs.push(wdir, dl);
  let agent: Awaited<ReturnType<typeof startWorker>> | null = null;
  t.after(async () => { await agent?.close(); await m.close(); cleanup(...dirs); });
  const { link } = await m.get<{ link: string }>('/api/v1/enrollment');
  assert.equal((await cli('join', link, '--data', wdir, '--name', 'rw')).status, 0);
  agent = await startWorker({ dataDir: wdir, executor: 'host', idleSource: 'none', preferences: { when: 'always' }, labels: [], log: () => undefined });
  const id = await m.force('one');
  assert.equal((await m.waitFinished(id, 30_000)).result, 'success');
  const before = await download(m, id, dl, 'before');
  const oldKey = (await cli('farm-key', 'show', '--data', m.dataDir)).stdout.trim();
  assert.equal(oldKey, before.parsed.farmKey.keyid);
  await agent.close();
  agent = null;
  await m.close();

  const rotated = await cli('farm-key', 'rotate', '--data', m.dataDir);
  assert.equal(rotated.status, 0, rotated.stderr);
  const newKey = rotated.stdout.trim();
  assert.match(newKey, /^sha256:[0-9a-f]{64}$/);
  assert.notEqual(newKey, oldKey);
  const kept = joinPath(m.dataDir, 'farm-keys', `${oldKey.slice(7)}.key`);
  assert.equal(statSync(kept).mode & 0o777, 0o600);
  assert.equal(statSync(joinPath(m.dataDir, 'farm.key')).mode & 0o777, 0o600);

  m = await testMaster({ one: BUILDER }, { dir: joinPath(m.dataDir, '..') });
  assert.equal((await m.get<{ keyid: string }>('/.well-known/crowdbake/farm-key')).keyid, newKey);
  const after = await download(m, id, dl, 'after');
  assert.equal(after.parsed.farmKey.keyid, newKey);
  const check = (d: { file: string; bundle: string }, pin: string) => cli('verify', d.file, '--provenance', d.bundle, '--farm-key', pin, '--allow-unreplicated');
  assert.equal((await check(before, oldKey)).status, 0);
  assert.equal((await check(after, newKey)).status, 0);
  const wrong = await check(before, newKey);
  assert.equal(wrong.status, 1);
  assert.match(wrong.stdout, /the summary is from another farm/);
});
