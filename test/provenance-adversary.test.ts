import { test } from 'node:test';
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { existsSync } from 'node:fs';
import { join as joinPath } from 'node:path';
import WebSocket from 'ws';
import type { BuildView, WorkerView } from '../protocol/api.js';
import { BuildSpecSchema } from '../protocol/build-spec.js';
import { PROTOCOL_VERSION } from '../protocol/version.js';
import type { Envelope } from '../protocol/provenance.js';
import { attemptStatement, signStatement } from '../worker/provenance-signer.js';
import type { TestMaster } from './helpers/cluster.js';
import { cleanup, crowdMaster, identity, join, until, type Identity } from './helpers/crowd.js';

/**
 * [provenance] A hostile worker with an enrolled key: a raw WebSocket speaking the worker
 * protocol, signing statements with the real signer. Each refusal is shown to be a refusal
 * of the statement (an honest statement from the same worker is accepted first), and the
 * worker is flagged with the reason; the bytes it uploaded are not served.
 */

const BUILDER = `
requires: { executor: host }
provenance: required
steps:
  - run: "true"
artifacts: [out.txt]
`;
const CAPS = { os: 'evil', platform: 'linux', arch: 'x64', cpus: 1, memoryBytes: 1e9, diskBytes: 1e9, executors: ['host'], labels: [] as string[], maxBuilds: 1, virtualization: false };
const sha = (b: Buffer) => createHash('sha256').update(b).digest('hex');

interface Frame { type: string; buildId?: number; attempt?: number; spec?: unknown; reason?: string; message?: string }

async function hostileWorker(m: TestMaster, name: string, key: Identity) {
  const j = await join(m, { worker: name, workerKey: key, displayName: 'Mallory' });
  assert.equal(j.status, 201, JSON.stringify(j.body));
  const ws = new WebSocket(`${m.url.replace('http', 'ws')}/api/v1/worker`);
  const inbox: Frame[] = [];
  ws.on('message', (d) => inbox.push(JSON.parse(d.toString()) as Frame));
  ws.on('error', () => undefined);
  await new Promise((ok) => ws.once('open', ok));
  const send = (msg: Record<string, unknown>) => ws.send(JSON.stringify(msg));
  send({ type: 'hello', protocol: PROTOCOL_VERSION, name, token: j.token, agentVersion: 'evil', capabilities: CAPS });
  await until('welcome', () => inbox.find((f) => f.type === 'welcome'));
  /** Runs the assigned build the way a worker would, uploading `bytes`, and finishes it with `provenance`. */
  const run = async (buildId: number, bytes: Buffer, statementFor: (a: { attempt: number; spec: ReturnType<typeof BuildSpecSchema.parse> }) => Envelope | undefined) => {
    const a = await until(`the assignment of ${buildId}`, () => inbox.find((f) => f.type === 'assign' && f.buildId === buildId));
    const spec = BuildSpecSchema.parse(a.spec);
    send({ type: 'accepted', buildId, attempt: a.attempt });
    send({ type: 'artifact', buildId, attempt: a.attempt, name: 'out.txt', size: bytes.length, sha256: sha(bytes), offset: 0, data: bytes.toString('base64'), last: true });
    const provenance = statementFor({ attempt: a.attempt!, spec });
    send({ type: 'state', buildId, attempt: a.attempt, state: 'finished', result: 'success', message: null, ...(provenance ? { provenance } : {}) });
    return a.attempt!;
  };
  return { ws, inbox, run };
}

const statement = (buildId: number, attempt: number, spec: ReturnType<typeof BuildSpecSchema.parse>, worker: string, artifact: Buffer) => attemptStatement({
  buildId, attempt, worker, spec, executor: 'host', limits: {}, revision: null,
  artifacts: [{ name: 'out.txt', size: artifact.length, sha256: sha(artifact) }],
  startedOn: new Date().toISOString(), finishedOn: new Date().toISOString(), agentVersion: 'evil',
});

const flagsOf = async (m: TestMaster, worker: string) =>
  ((await m.get<(WorkerView & { flags: { buildId: number; reason: string }[] })[]>('/api/v1/workers')).find((w) => w.name === worker)?.flags ?? []);

async function requeued(m: TestMaster, id: number): Promise<BuildView> {
  return until(`build ${id} requeued`, async () => { const b = await m.get<BuildView>(`/api/v1/builds/${id}`); return b.state === 'queued' ? b : null; });
}

test('a worker that signs a statement for bytes it did not upload, signs with a key not enrolled, replays another build\'s statement or sends none for a provenance: required builder is refused and flagged; an honest statement is accepted', async (t) => {
  const dirs: string[] = [];
  const m = await crowdMaster({ honest: BUILDER, lie: BUILDER, otherkey: BUILDER, replay: BUILDER, unsigned: BUILDER }, 'enrollment: { mode: open, joinsPerHour: 100 }\nmaxAttempts: 3\n', dirs);
  t.after(async () => { await m.close(); cleanup(...dirs); });
  const key = identity();
  const evil = await hostileWorker(m, 'evil', key);
  const uploaded = Buffer.from('the bytes it uploaded\n');

  // The control: an honest statement from this worker is accepted, and served in the bundle.
  const ok = await m.force('honest');
  let honest: Envelope | undefined;
  await evil.run(ok, uploaded, ({ attempt, spec }) => (honest = signStatement(statement(ok, attempt, spec, 'evil', uploaded), key.privateKey)));
  const done = await m.waitFinished(ok, 10_000);
  assert.equal(done.result, 'success');
  const bundle = await (await fetch(`${m.url}/api/v1/builds/${ok}/artifacts/out.txt/provenance`)).json() as { attestations: { worker: string; envelope: Envelope }[] };
  assert.deepEqual(bundle.attestations.map((a) => [a.worker, a.envelope.payload]), [['evil', honest!.payload]]);
  assert.deepEqual(await flagsOf(m, 'evil'), []);

  // A statement, validly signed, for other bytes than it uploaded.
  const lie = await m.force('lie');
  await evil.run(lie, uploaded, ({ attempt, spec }) => signStatement(statement(lie, attempt, spec, 'evil', Buffer.from('the bytes it claims\n')), key.privateKey));
  const b1 = await requeued(m, lie);
  assert.match(b1.message!, /worker evil sent a statement that does not match what it uploaded: subject "out\.txt" has sha256 [0-9a-f]{12}…, but the bytes uploaded have [0-9a-f]{12}…; it was flagged/);
  assert.ok(evil.inbox.some((f) => f.type === 'cancel' && f.buildId === lie), 'the worker is told its attempt is refused');
  assert.ok(!existsSync(joinPath(m.dataDir, 'artifacts', String(lie), 'out.txt')), 'the refused bytes are not kept');
  assert.equal((await fetch(`${m.url}/api/v1/builds/${lie}/artifacts/out.txt`)).status, 404);
  assert.equal((await fetch(`${m.url}/api/v1/builds/${lie}/artifacts/out.txt/provenance`)).status, 409);

  // Signed with another key than the one it enrolled.
  const other = await m.force('otherkey');
  await evil.run(other, uploaded, ({ attempt, spec }) => signStatement(statement(other, attempt, spec, 'evil', uploaded), identity().privateKey));
  assert.match((await requeued(m, other)).message!, /sent a statement whose signature does not verify with the key enrolled for it/);

  // The honest statement of the first build, replayed for another.
  const replay = await m.force('replay');
  await evil.run(replay, uploaded, () => honest);
  assert.match((await requeued(m, replay)).message!, new RegExp(`the statement is for build ${ok} attempt 1 \\(build/${ok}/attempt/1\\), not build ${replay} attempt 1: a replayed or misdirected statement`));

  // No statement at all, for a builder that requires one.
  const unsigned = await m.force('unsigned');
  await evil.run(unsigned, uploaded, () => undefined);
  assert.match((await requeued(m, unsigned)).message!, /sent no signed statement for its attempt, and the builder says provenance: required/);

  const flags = await flagsOf(m, 'evil');
  assert.deepEqual(flags.map((f) => f.buildId).sort((a, b) => a - b), [lie, other, replay, unsigned]);
  assert.match(flags.find((f) => f.buildId === lie)!.reason, /does not match what it uploaded/);
});
