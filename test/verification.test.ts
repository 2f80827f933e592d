import { test } from 'node:test';
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import type { ArtifactView, BuildView, WorkerView } from '../protocol/api.js';
import { startWorker, type WorkerHandle } from '../worker/agent.js';
import { cleanup, tempDir, testMaster, until, type TestMaster } from './helpers/cluster.js';

// The step writes "honest" into its artifact, unless the worker's data dir holds a file named
// `tamper` (the checkout is DATA/work/bID-aN/src): that worker's artifact differs from the others'.
const builder = (replicas: number) => `
requires: { executor: host }
verify: { replicas: ${replicas} }
steps:
  - run: if [ -e ../../../tamper ]; then echo tampered > out.txt; else echo honest > out.txt; fi
artifacts: [out.txt]
`;
const sha = (s: string) => createHash('sha256').update(s).digest('hex');

async function worker(m: TestMaster, name: string, dirs: string[], opts: { tamper?: boolean } = {}): Promise<WorkerHandle> {
  const dir = tempDir(name);
  dirs.push(dir);
  if (opts.tamper) writeFileSync(join(dir, 'tamper'), '');
  return startWorker({ preferences: { when: 'always' }, idleSource: 'none', master: m.url, token: await m.token(name), dataDir: dir, executor: 'host', labels: [], log: () => undefined });
}

async function decided(m: TestMaster, id: number): Promise<BuildView> {
  return until(`the verdict of build ${id}`, async () => {
    const b = await m.get<BuildView>(`/api/v1/builds/${id}`);
    return b.verification && b.verification.verdict !== 'pending' ? b : null;
  }, 30_000);
}

test('verify: { replicas: 2 } runs the build on two different workers and accepts the artifact when both agree', async (t) => {
  const m = await testMaster({ v: builder(2) });
  const dirs: string[] = [];
  const workers: WorkerHandle[] = [];
  t.after(async () => { for (const w of workers) await w.close(); await m.close(); cleanup(...dirs); });
  workers.push(await worker(m, 'wa', dirs));
  const id = await m.force('v', { reason: 'release' });

  // With one worker connected the first replica runs, the second waits for another worker.
  const first = await m.waitFinished(id, 20_000);
  assert.equal(first.result, 'success');
  const pending = await m.get<BuildView>(`/api/v1/builds/${id}`);
  assert.equal(pending.verification?.verdict, 'pending');
  assert.equal(pending.verification?.replicas, 2);
  const replica = pending.verification!.members.find((x) => x.id !== id)!;
  assert.equal((await m.get<BuildView>(`/api/v1/builds/${replica.id}`)).state, 'queued');
  assert.match((await m.get<BuildView>(`/api/v1/builds/${replica.id}`)).reason ?? '', /^release; replica 2 of 2$/);
  const early = await fetch(`${m.url}/api/v1/builds/${id}/artifacts/out.txt`);
  assert.equal(early.status, 409);
  assert.match(((await early.json()) as { error: string }).error, /not verified yet: waiting for its 1 replica/);

  workers.push(await worker(m, 'wb', dirs));
  const b = await decided(m, id);
  assert.equal(b.verification!.verdict, 'verified');
  assert.match(b.verification!.detail ?? '', /2 of 2 replicas made identical artifacts/);
  assert.deepEqual(b.verification!.members.map((x) => [x.worker, x.verdict]).sort(), [['wa', 'verified'], ['wb', 'verified']]);
  for (const member of b.verification!.members) {
    const arts = await m.get<ArtifactView[]>(`/api/v1/builds/${member.id}/artifacts`);
    assert.deepEqual(arts, [{ name: 'out.txt', size: 7, sha256: sha('honest\n'), worker: member.worker, verified: true }]);
    const log = await (await fetch(`${m.url}/api/v1/builds/${member.id}/log`)).text();
    assert.match(log, new RegExp(`attempt 1 on worker ${member.worker} `));
  }
  const r = await fetch(`${m.url}/api/v1/builds/${id}/artifacts/out.txt`);
  assert.equal(r.status, 200);
  assert.equal(await r.text(), 'honest\n');
  const flags = (await m.get<WorkerView[]>('/api/v1/workers')).flatMap((w) => w.flags ?? []);
  assert.deepEqual(flags, []);
});

test('two replicas that disagree: both marked disagreed, both workers flagged, the artifact is refused', async (t) => {
  const m = await testMaster({ v: builder(2) });
  const dirs: string[] = [];
  const workers: WorkerHandle[] = [];
  t.after(async () => { for (const w of workers) await w.close(); await m.close(); cleanup(...dirs); });
  workers.push(await worker(m, 'wa', dirs), await worker(m, 'wb', dirs, { tamper: true }));
  const id = await m.force('v');
  const b = await decided(m, id);
  assert.equal(b.verification!.verdict, 'disagreed');
  assert.match(b.verification!.detail ?? '', /replicas disagree and none has a majority of 2: out\.txt: sha256 [0-9a-f]{12}… vs sha256 [0-9a-f]{12}… from build \d+ on w[ab]/);
  const r = await fetch(`${m.url}/api/v1/builds/${id}/artifacts/out.txt`);
  assert.equal(r.status, 409);
  assert.match(((await r.json()) as { error: string }).error, /artifacts are disagreed: replicas disagree/);
  const arts = await m.get<ArtifactView[]>(`/api/v1/builds/${id}/artifacts`);
  assert.equal(arts[0]!.verified, false);
  const workersView = await m.get<WorkerView[]>('/api/v1/workers');
  for (const name of ['wa', 'wb']) {
    const flags = workersView.find((w) => w.name === name)!.flags!;
    assert.equal(flags.length, 1, name);
    assert.ok(b.verification!.members.some((x) => x.id === flags[0]!.buildId && x.worker === name));
  }
});

test('three replicas, one worker tampers: the majority is verified, only that worker is flagged', async (t) => {
  const m = await testMaster({ v: builder(3) });
  const dirs: string[] = [];
  const workers: WorkerHandle[] = [];
  t.after(async () => { for (const w of workers) await w.close(); await m.close(); cleanup(...dirs); });
  workers.push(await worker(m, 'wa', dirs), await worker(m, 'wb', dirs, { tamper: true }), await worker(m, 'wc', dirs));
  const id = await m.force('v');
  const b = await decided(m, id);
  const byWorker = new Map(b.verification!.members.map((x) => [x.worker, x]));
  assert.deepEqual([...byWorker.keys()].sort(), ['wa', 'wb', 'wc']);
  assert.deepEqual(['wa', 'wb', 'wc'].map((w) => byWorker.get(w)!.verdict), ['verified', 'disagreed', 'verified']);
  const bad = byWorker.get('wb')!.id;
  const badView = await m.get<BuildView>(`/api/v1/builds/${bad}`);
  assert.match(badView.verification!.detail ?? '', /differ from the majority's \(2 of 3\): out\.txt: sha256/);
  assert.equal((await fetch(`${m.url}/api/v1/builds/${bad}/artifacts/out.txt`)).status, 409);
  const good = await fetch(`${m.url}/api/v1/builds/${byWorker.get('wa')!.id}/artifacts/out.txt`);
  assert.equal(await good.text(), 'honest\n');
  const workersView = await m.get<WorkerView[]>('/api/v1/workers');
  const flagged = workersView.filter((w) => (w.flags ?? []).length > 0);
  assert.deepEqual(flagged.map((w) => [w.name, w.flags!.map((f) => f.buildId)]), [['wb', [bad]]]);
});

test('a builder file with verify.replicas below 2 is refused naming the key', async (t) => {
  const m = await testMaster({ v: builder(1) });
  t.after(() => m.close());
  const view = (await m.get<{ name: string; error: string | null }[]>('/api/v1/builders')).find((x) => x.name === 'v')!;
  assert.match(view.error ?? '', /builders\/v\.yml:3:\d+: verify\.replicas: replicas must be at least 2/);
});
