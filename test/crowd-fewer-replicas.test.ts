// [crowd] Earned trust that saves replicas (BOINC's adaptive replication): real joined
// volunteers' workers (host executor) build replicated builders; once a volunteer's last K
// replicated results agreed, a replica given to them drops the group's queued replicas down
// to the builder's verify.minReplicas; one disagreement resets that.
import assert from 'node:assert/strict';
import { writeFileSync } from 'node:fs';
import { join as joinPath } from 'node:path';
import { test } from 'node:test';
import type { BuildView, EnrollmentView, VolunteerView, WorkerView } from '../protocol/api.js';
import type { WorkerHandle } from '../worker/agent.js';
import type { TestMaster } from './helpers/cluster.js';
import { admin, cleanup, crowdMaster, identity, join, joinedWorker, until } from './helpers/crowd.js';

// `fewer` may shrink to one replica; `check` is always fully replicated, and a worker whose
// data dir holds `tamper` makes a different artifact for it.
const BUILDERS = {
  fewer: 'requires: { executor: host }\nverify: { replicas: 3, minReplicas: 1, owners: distinct }\nsteps:\n  - run: echo same > out.txt\nartifacts: [out.txt]\n',
  check: 'requires: { executor: host }\nverify: { replicas: 3, owners: distinct }\nsteps:\n  - run: r=honest; d=$PWD; while [ "$d" != / ]; do [ -e "$d/tamper" ] && r=tampered; d=$(dirname "$d"); done; echo $r > out.txt\nartifacts: [out.txt]\n',
};
const YAML = 'enrollment: { mode: open, joinsPerHour: 100 }\ntrust: { promoteAfter: 0, fewerReplicasAfter: 2 }\n';

async function decided(m: TestMaster, id: number): Promise<BuildView> {
  return until(`the verdict of build ${id}`, async () => {
    const b = await m.get<BuildView>(`/api/v1/builds/${id}`);
    return b.verification && b.verification.verdict !== 'pending' ? b : null;
  }, 60_000);
}
const streaks = async (m: TestMaster) => Object.fromEntries((await admin<VolunteerView[]>(m, 'GET', '/api/v1/volunteers')).body.map((v) => [v.displayName, v.streak]));
/** The streaks once they are `want` (the verdict is stored a moment before the streaks are counted from it). */
const streaksAre = (m: TestMaster, want: Record<string, number>) => until(`streaks ${JSON.stringify(want)}`, async () => {
  const got = await streaks(m);
  return Object.entries(want).every(([k, v]) => got[k] === v) ? got : null;
});

test('fewer replicas: after K agreeing results a volunteer\'s replica drops the queued ones down to minReplicas; a solo result counts for no streak; a disagreement resets it', { timeout: 180_000 }, async (t) => {
  const dirs: string[] = [];
  const workers = new Map<string, WorkerHandle>();
  const m = await crowdMaster(BUILDERS, YAML, dirs);
  t.after(async () => { for (const w of workers.values()) await w.close(); await m.close(); cleanup(...dirs); });
  assert.equal((await m.get<EnrollmentView>('/api/v1/enrollment')).fewerReplicasAfter, 2);
  for (const name of ['Ada', 'Bob', 'Carol']) {
    const j = await join(m, { worker: `${name.toLowerCase()}-pc`, who: identity(), displayName: name });
    assert.equal(j.status, 201);
    const before = new Set(dirs);
    workers.set(name, await joinedWorker(m, j.token, dirs));
    if (name === 'Ada') writeFileSync(joinPath(dirs.find((d) => !before.has(d))!, 'tamper'), '');
  }
  await until('three workers', async () => (await m.get<WorkerView[]>('/api/v1/workers')).filter((w) => w.connected).length === 3);

  // Two fully replicated groups: everyone agrees twice (Ada tampers only with `check`).
  for (let i = 0; i < 2; i++) assert.equal((await decided(m, await m.force('fewer'))).verification!.verdict, 'verified');
  await streaksAre(m, { Ada: 2, Bob: 2, Carol: 2 });

  // The third: its first replica goes to someone with a streak of 2; the two queued ones are dropped.
  const id = await m.force('fewer');
  const b = await decided(m, id);
  assert.equal(b.verification!.verdict, 'verified', b.verification!.detail ?? '');
  const members = b.verification!.members;
  assert.equal(members.length, 3);
  const ran = members.filter((x) => x.worker !== null);
  const dropped = members.filter((x) => x.worker === null);
  assert.deepEqual([ran.length, dropped.length], [1, 2], JSON.stringify(members));
  for (const d of dropped) {
    const row = await m.get<BuildView>(`/api/v1/builds/${d.id}`);
    assert.equal(row.result, 'cancelled');
    assert.match(row.message ?? '', /^not needed: replica dropped because build \d+ went to (Ada|Bob|Carol), whose last 2 replicated results agreed/);
    assert.equal(row.verification!.verdict, 'unverified');
  }
  assert.equal((await fetch(`${m.url}/api/v1/builds/${ran[0]!.id}/artifacts/out.txt`)).status, 200, 'the solo result is served');
  // The shortening spent the streak that allowed it; the result, checked by no one, adds nothing.
  const solo = { 'ada-pc': 'Ada', 'bob-pc': 'Bob', 'carol-pc': 'Carol' }[ran[0]!.worker!]!;
  await streaksAre(m, { Ada: 2, Bob: 2, Carol: 2, [solo]: 0 });

  // Ada disagrees on a fully replicated build: flagged, streak 0.
  const c = await decided(m, await m.force('check'));
  const adaVerdict = c.verification!.members.find((x) => x.worker === 'ada-pc')!.verdict;
  assert.equal(adaVerdict, 'disagreed');
  const after = await streaksAre(m, { Ada: 0 });
  assert.deepEqual([after.Bob, after.Carol], [solo === 'Bob' ? 1 : 3, solo === 'Carol' ? 1 : 3], 'one more agreeing result each, from where the solo left them');
  await until('Ada\'s worker flagged', async () => ((await m.get<WorkerView[]>('/api/v1/workers')).find((w) => w.name === 'ada-pc')?.flags?.length ?? 0) > 0);

  // Now only Ada's worker is connected: her replica drops nothing, the other two wait.
  for (const n of ['Bob', 'Carol']) { await workers.get(n)?.close(); workers.delete(n); }
  await until('only Ada connected', async () => (await m.get<WorkerView[]>('/api/v1/workers')).filter((w) => w.connected).length === 1);
  const again = await m.force('fewer');
  const first = await m.waitFinished(again, 30_000);
  assert.equal(first.worker, 'ada-pc');
  const group = (await m.get<BuildView>(`/api/v1/builds/${again}`)).verification!;
  const others = await Promise.all(group.members.filter((x) => x.id !== again).map((x) => m.get<BuildView>(`/api/v1/builds/${x.id}`)));
  assert.deepEqual(others.map((o) => o.state), ['queued', 'queued'], 'nothing dropped for a volunteer whose streak was reset');
  assert.equal(group.verdict, 'pending');
});
