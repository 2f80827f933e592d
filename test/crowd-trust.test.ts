import { test } from 'node:test';
import assert from 'node:assert/strict';
import { writeFileSync } from 'node:fs';
import { join as joinPath } from 'node:path';
import type { BuilderView, BuildView, VolunteerView, WorkerView } from '../protocol/api.js';
import type { WorkerHandle } from '../worker/agent.js';
import { admin, cleanup, crowdMaster, identity, join, joinedWorker, rawWorker, until, type Identity } from './helpers/crowd.js';
import type { TestMaster } from './helpers/cluster.js';

// The step writes "honest" into its artifact unless a directory above it (the worker's data dir) holds `tamper`.
const replicated = (replicas: number, owners: 'distinct' | 'any') => `
requires: { executor: host }
verify: { replicas: ${replicas}, owners: ${owners} }
steps:
  - run: r=honest; d=$PWD; while [ "$d" != / ]; do [ -e "$d/tamper" ] && r=tampered; d=$(dirname "$d"); done; echo $r > out.txt
artifacts: [out.txt]
`;

async function decided(m: TestMaster, id: number): Promise<BuildView> {
  return until(`the verdict of build ${id}`, async () => {
    const b = await m.get<BuildView>(`/api/v1/builds/${id}`);
    return b.verification && b.verification.verdict !== 'pending' ? b : null;
  }, 60_000);
}

/** Joins `worker` for `who` (open enrollment) and starts a real agent with the token it made. */
async function volunteerWorker(m: TestMaster, who: Identity, name: string, worker: string, dirs: string[], workers: WorkerHandle[]): Promise<WorkerHandle & { dir: string }> {
  const j = await join(m, { worker, who, displayName: name });
  assert.equal(j.status, 201, JSON.stringify(j.body));
  const before = new Set(dirs);
  const w = await joinedWorker(m, j.token, dirs);
  workers.push(w);
  return Object.assign(w, { dir: dirs.find((d) => !before.has(d))! });
}

const volunteersOf = async (m: TestMaster) => (await admin<VolunteerView[]>(m, 'GET', '/api/v1/volunteers')).body;

test('owners: distinct puts replicas on different volunteers even when one volunteer has the most free workers; without it, one volunteer can take both', async (t) => {
  const dirs: string[] = [];
  const workers: WorkerHandle[] = [];
  const m = await crowdMaster({ distinct: replicated(2, 'distinct'), any: replicated(2, 'any') }, 'enrollment: { mode: open, joinsPerHour: 100 }\n', dirs);
  t.after(async () => { for (const w of workers) await w.close(); await m.close(); cleanup(...dirs); });
  const sybil = identity();
  for (const n of ['s1', 's2', 's3']) await volunteerWorker(m, sybil, 'Sybil', n, dirs, workers);

  // Without distinct: both replicas on Sybil's machines (the per-worker rule only).
  const any = await decided(m, await m.force('any'));
  assert.equal(any.verification!.verdict, 'verified');
  assert.deepEqual(any.verification!.members.map((x) => x.worker!.slice(0, 1)), ['s', 's']);

  // With distinct: the first replica runs on one of Sybil's workers; the second waits although two of Sybil's are free.
  const id = await m.force('distinct');
  const first = await m.waitFinished(id, 30_000);
  assert.match(first.worker!, /^s[123]$/);
  const replicaId = (await m.get<BuildView>(`/api/v1/builds/${id}`)).verification!.members.find((x) => x.id !== id)!.id;
  await until('Sybil\'s workers all idle', async () => (await m.get<WorkerView[]>('/api/v1/workers')).filter((w) => w.state === 'idle').length === 3);
  await new Promise((r) => setTimeout(r, 300));
  assert.equal((await m.get<BuildView>(`/api/v1/builds/${replicaId}`)).state, 'queued');

  await volunteerWorker(m, identity(), 'Other', 'o1', dirs, workers);
  const b = await decided(m, id);
  assert.equal(b.verification!.verdict, 'verified');
  assert.deepEqual(b.verification!.members.map((x) => x.worker).sort(), [first.worker, 'o1'].sort());
});

test('an altering worker is outvoted and flagged, and its volunteer loses the trust it earned; honest volunteers keep theirs', async (t) => {
  const dirs: string[] = [];
  const workers: WorkerHandle[] = [];
  const m = await crowdMaster({ v: replicated(3, 'distinct') }, 'enrollment: { mode: open, joinsPerHour: 100 }\ntrust: { promoteAfter: 1 }\n', dirs);
  t.after(async () => { for (const w of workers) await w.close(); await m.close(); cleanup(...dirs); });
  await volunteerWorker(m, identity(), 'Hon1', 'h1', dirs, workers);
  await volunteerWorker(m, identity(), 'Hon2', 'h2', dirs, workers);
  const tamperer = await volunteerWorker(m, identity(), 'Tam', 't1', dirs, workers);

  // Round 1: all agree; with promoteAfter 1, every volunteer earns trust.
  assert.equal((await decided(m, await m.force('v'))).verification!.verdict, 'verified');
  await until('trust earned', async () => (await volunteersOf(m)).every((v) => v.trust === 'trusted'));
  const earned = (await volunteersOf(m)).find((v) => v.displayName === 'Tam')!;
  assert.equal(earned.trustSource, 'earned');
  assert.match(earned.trustEvents!.at(-1)!.reason, /^earned: its last 1 replicated results agreed with the majority/);

  // Round 2: Tam's worker alters its artifact.
  writeFileSync(joinPath(tamperer.dir, 'tamper'), '');
  const id = await m.force('v');
  const b = await decided(m, id);
  const byWorker = new Map(b.verification!.members.map((x) => [x.worker, x.verdict]));
  assert.deepEqual([byWorker.get('h1'), byWorker.get('h2'), byWorker.get('t1')], ['verified', 'verified', 'disagreed']);
  const flags = (await m.get<WorkerView[]>('/api/v1/workers')).filter((w) => (w.flags ?? []).length > 0).map((w) => w.name);
  assert.deepEqual(flags, ['t1']);

  const after = await until('Tam demoted', async () => {
    const vs = await volunteersOf(m);
    return vs.find((v) => v.displayName === 'Tam')?.trust === 'new' ? vs : null;
  });
  const tam = after.find((v) => v.displayName === 'Tam')!;
  assert.deepEqual(tam.trustEvents!.map((e) => [e.previous, e.trust, e.source]), [[null, 'new', 'join'], ['new', 'trusted', 'earned'], ['trusted', 'new', 'earned']]);
  assert.match(tam.trustEvents!.at(-1)!.reason, /earned trust withdrawn: build \d+ on t1 disagreed with the majority/);
  assert.equal(tam.streak, 0);
  assert.deepEqual(after.filter((v) => v.displayName !== 'Tam').map((v) => v.trust), ['trusted', 'trusted']);
  await until('credit counts the verdicts', async () => {
    const c = (await m.get<VolunteerView[]>('/api/v1/volunteers')).find((v) => v.displayName === 'Tam')?.credit;
    return c?.builds === 2 && c.agreed === 1 && c.disagreed === 1;
  });

  // Trust a maintainer gave is not taken back by a disagreement (only the streak is).
  const tamId = tam.id;
  assert.equal((await admin(m, 'POST', `/api/v1/volunteers/${tamId}/trust`, { trust: 'trusted', reason: 'I know Tam' })).status, 200);
  const b3 = await decided(m, await m.force('v'));
  assert.equal(new Map(b3.verification!.members.map((x) => [x.worker, x.verdict])).get('t1'), 'disagreed');
  await new Promise((r) => setTimeout(r, 300));
  const tam3 = (await volunteersOf(m)).find((v) => v.id === tamId)!;
  assert.deepEqual([tam3.trust, tam3.trustSource], ['trusted', 'maintainer']);
});

const SECRET_BUILDER = `
requires: { executor: host, trust: trusted }
steps:
  - run: echo signing
    env: { SIGNING_KEY: the-secret-value }
`;

test('a trust: trusted builder never reaches a new volunteer\'s worker (no assign, no spec, no env); once promoted, it does', async (t) => {
  const dirs: string[] = [];
  const m = await crowdMaster({ sign: SECRET_BUILDER }, 'enrollment: { mode: open }\n', dirs);
  t.after(async () => { await m.close(); cleanup(...dirs); });
  const j = await join(m, { worker: 'newbie', displayName: 'Newbie' });
  const w = await rawWorker(m, 'newbie', j.token);
  assert.ok(w.inbox.some((f) => f.type === 'welcome'), 'the worker is connected and could take builds');
  const id = await m.force('sign');

  const view = await until('the builder to say why', async () => (await m.get<BuilderView[]>('/api/v1/builders')).find((b) => b.name === 'sign' && b.unrunnable));
  assert.match(view.unrunnable!, /newbie belongs to a volunteer whose trust is new; the builder needs trust: trusted/);
  await new Promise((r) => setTimeout(r, 500));
  assert.equal((await m.get<BuildView>(`/api/v1/builds/${id}`)).state, 'queued');
  assert.ok(!w.inbox.some((f) => f.type === 'assign'));
  assert.ok(!JSON.stringify(w.inbox).includes('the-secret-value'));

  // The same worker, once its volunteer is trusted, is sent the build: the route was open all along.
  const vol = (await admin<VolunteerView[]>(m, 'GET', '/api/v1/volunteers')).body[0]!;
  const p = await admin<{ trust: string }>(m, 'POST', `/api/v1/volunteers/${vol.id}/trust`, { trust: 'trusted', reason: 'known contributor' });
  assert.deepEqual([p.status, p.body.trust], [200, 'trusted']);
  const assign = await until('the assignment after the promotion', () => w.inbox.find((f) => f.type === 'assign'));
  assert.equal(assign.buildId, id);
  assert.equal(assign.spec!.steps[0]!.env.SIGNING_KEY, 'the-secret-value');
  w.ws.close();

  // A worker on a maintainer's token (`crowdbake token create`) counts as trusted.
  const maint = await rawWorker(m, 'maint', await m.token('maint'));
  const id2 = await m.force('sign');
  // Build id went back to the queue when newbie's connection closed: the maintainer's worker gets one of the two.
  assert.ok([id, id2].includes((await until('the maintainer worker\'s assignment', () => maint.inbox.find((f) => f.type === 'assign'))).buildId!));
  maint.ws.close();
});
