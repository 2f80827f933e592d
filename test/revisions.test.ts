import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { createHmac } from 'node:crypto';
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import type { BuildView } from '../protocol/api.js';
import { startWorker } from '../worker/agent.js';
import { cleanup, tempDir, testMaster, type TestMaster } from './helpers/cluster.js';
import { gitRepo } from './helpers/git-repo.js';

// What a build checks out (its branch and exact revision), rebuilds, and the collapse of
// superseded queued commits, against a real master, a real worker and git repositories.


const builder = (git: string, extra = '') =>
  `source: { git: "${git}", branches: [main, "release-*"] }\nrequires: { executor: host }\n${extra}steps:\n  - run: git rev-parse HEAD && cat file.txt\n`;

async function post(m: TestMaster, path: string, body: unknown = {}): Promise<{ status: number; body: { id?: number; rebuildOf?: number; error?: string } }> {
  const r = await fetch(`${m.url}${path}`, {
    method: 'POST', headers: { authorization: `Bearer ${m.adminToken}`, 'content-type': 'application/json' }, body: JSON.stringify(body),
  });
  return { status: r.status, body: (await r.json()) as { id?: number; error?: string } };
}

const logOf = async (m: TestMaster, id: number) => (await fetch(`${m.url}/api/v1/builds/${id}/log`)).text();

async function withWorker(t: { after(fn: () => unknown): void }, m: TestMaster, maxBuilds = 1) {
  const dir = tempDir('w');
  const w = await startWorker({ preferences: { when: 'always' }, idleSource: 'none', master: m.url, token: await m.token(`w${Date.now()}`), dataDir: dir, executor: 'host', labels: [], maxBuilds, log: () => undefined });
  t.after(async () => { await w.close(); cleanup(dir); });
  return w;
}

test('a forced build of a branch clones that branch and checks out exactly the revision; the build says its branch', async (t) => {
  const repo = await gitRepo();
  repo.commit();
  repo.git('checkout', '--quiet', '-b', 'release-1');
  const fix = repo.commit('release fix');
  repo.commit('release moves on');
  repo.git('checkout', '--quiet', 'main');
  // A commit no branch reaches (a pull request's head): only fetching it by sha finds it.
  repo.git('checkout', '--quiet', '-b', 'pr');
  const pr = repo.commit('pull request head');
  repo.git('update-ref', 'refs/pull/7/head', pr);
  repo.git('checkout', '--quiet', 'main');
  repo.git('branch', '--quiet', '-D', 'pr');
  const m = await testMaster({ rel: builder(repo.url), nosrc: 'requires: { executor: host }\nsteps:\n  - run: "true"\n' });
  t.after(async () => { await m.close(); cleanup(repo.dir); });
  await withWorker(t, m);

  const a = await post(m, '/api/v1/builders/rel/builds', { revision: fix, branch: 'release-1' });
  assert.equal(a.status, 201, a.body.error);
  const b = await post(m, '/api/v1/builders/rel/builds', { revision: pr });
  const doneA = await m.waitFinished(a.body.id!, 60_000);
  const logA = await logOf(m, doneA.id);
  assert.equal(doneA.result, 'success', logA);
  assert.equal(doneA.branch, 'release-1');
  assert.equal(doneA.trigger, 'force');
  assert.match(logA, /checkout .* branch release-1 at /);
  assert.match(logA, new RegExp(`^${fix}\nrelease fix$`, 'm'), 'the step ran at the requested commit, not the branch head');

  const doneB = await m.waitFinished(b.body.id!, 60_000);
  const logB = await logOf(m, doneB.id);
  assert.equal(doneB.result, 'success', logB);
  assert.equal(doneB.branch, null, 'no branch given: the builder\'s');
  assert.match(logB, /is not on a branch head; fetching it/);
  assert.match(logB, new RegExp(`^${pr}\npull request head$`, 'm'));

  const missing = await post(m, '/api/v1/builders/rel/builds', { revision: 'f'.repeat(40) });
  const doneM = await m.waitFinished(missing.body.id!, 60_000);
  assert.equal(doneM.result, 'error');
  assert.match(await logOf(m, doneM.id), /checkout failed/);

  const bad = await post(m, '/api/v1/builders/rel/builds', { branch: 'no such branch' });
  assert.equal(bad.status, 400);
  assert.match(bad.body.error!, /branch: is not a branch name/);
  const noSource = await post(m, '/api/v1/builders/nosrc/builds', { branch: 'main' });
  assert.equal(noSource.status, 400);
  assert.match(noSource.body.error!, /builder "nosrc" has no source/);
});

test('rebuild queues the same builder at the same revision and branch, linked back; it needs the admin token', async (t) => {
  const repo = await gitRepo();
  const first = repo.commit('first');
  repo.git('checkout', '--quiet', '-b', 'release-2');
  const rel = repo.commit('on release-2');
  repo.commit('release-2 moves on');
  const m = await testMaster({ rel: builder(repo.url) });
  t.after(async () => { await m.close(); cleanup(repo.dir); });
  await withWorker(t, m);
  const orig = await post(m, '/api/v1/builders/rel/builds', { revision: rel, branch: 'release-2', reason: 'first try' });
  await m.waitFinished(orig.body.id!, 60_000);

  const noAuth = await fetch(`${m.url}/api/v1/builds/${orig.body.id}/rebuild`, { method: 'POST' });
  assert.equal(noAuth.status, 401);
  const r = await post(m, `/api/v1/builds/${orig.body.id}/rebuild`);
  assert.equal(r.status, 201, r.body.error);
  assert.equal(r.body.rebuildOf, orig.body.id);
  const done = await m.waitFinished(r.body.id!, 60_000);
  assert.equal(done.result, 'success', await logOf(m, done.id));
  assert.deepEqual([done.revision, done.branch, done.trigger, done.rebuildOf, done.reason], [rel, 'release-2', 'rebuild', orig.body.id, `rebuild of #${orig.body.id}`]);
  assert.match(await logOf(m, done.id), new RegExp(`^${rel}$`, 'm'));
  assert.notEqual(rel, first);

  const none = await post(m, '/api/v1/builds/999999/rebuild');
  assert.deepEqual([none.status, none.body.error], [404, 'no build 999999']);
});

test('a build forced without a revision records the commit its worker checked out; its rebuild builds that commit, not the new head', async (t) => {
  const repo = await gitRepo();
  const head = repo.commit('the head when forced');
  const m = await testMaster({ main: builder(repo.url) });
  t.after(async () => { await m.close(); cleanup(repo.dir); });
  await withWorker(t, m);
  const orig = await post(m, '/api/v1/builders/main/builds', { reason: 'no revision given' });
  const done = await m.waitFinished(orig.body.id!, 60_000);
  assert.equal(done.result, 'success', await logOf(m, done.id));
  assert.equal(done.revision, head, 'the build now names the exact commit');

  const moved = repo.commit('main moves on');
  const r = await post(m, `/api/v1/builds/${orig.body.id}/rebuild`);
  assert.equal(r.status, 201, r.body.error);
  const again = await m.waitFinished(r.body.id!, 60_000);
  assert.equal(again.revision, head);
  assert.match(await logOf(m, again.id), new RegExp(`^${head}$`, 'm'));
  assert.doesNotMatch(await logOf(m, again.id), new RegExp(moved));
  // A revision that was asked for (here a branch name) stays as it was asked.
  const named = await post(m, '/api/v1/builders/main/builds', { revision: 'main' });
  const namedDone = await m.waitFinished(named.body.id!, 60_000);
  assert.equal(namedDone.revision, 'main');
  assert.match(await logOf(m, namedDone.id), new RegExp(`^checked out ${moved}$`, 'm'));
});

test('collapse: a newer commit on the same branch supersedes queued, unstarted ones; forced builds, rebuilds, other branches and collapse: false are kept', async (t) => {
  const repo = await gitRepo();
  const [c1, c2, c3] = [repo.commit(), repo.commit(), repo.commit()];
  repo.git('branch', 'release-1', c1);
  const m = await testMaster({ app: builder(repo.url), keep: builder(repo.url, 'collapse: false\n') });
  t.after(async () => { await m.close(); cleanup(repo.dir); });
  // No worker yet: everything stays queued, as behind a busy farm. Pushes arrive by webhook
  // and queue a build for each of the two builders watching the repository.
  const secret = readFileSync(join(m.dataDir, 'webhook.secret'), 'utf8').trim();
  const push = async (after: string, branch: string): Promise<{ app: number; keep: number }> => {
    const body = JSON.stringify({ ref: `refs/heads/${branch}`, after, repository: { clone_url: `${repo.url}.git` } });
    const r = await fetch(`${m.url}/api/v1/hooks/gitea`, {
      method: 'POST', body,
      headers: { 'content-type': 'application/json', 'x-gitea-event': 'push', 'x-gitea-signature': createHmac('sha256', secret).update(body).digest('hex') },
    });
    const j = (await r.json()) as { queued: { builder: 'app' | 'keep'; id: number }[] };
    assert.equal(r.status, 202);
    return Object.fromEntries(j.queued.map((q) => [q.builder, q.id])) as { app: number; keep: number };
  };
  const p1 = await push(c1, 'main');
  const forced = (await post(m, '/api/v1/builders/app/builds', { revision: c1 })).body.id!;
  const other = await push(c1, 'release-1');
  const p2 = await push(c2, 'main');
  const rebuilt = (await post(m, `/api/v1/builds/${forced}/rebuild`)).body.id!;
  const p3 = await push(c3, 'main');
  const [old1, old2, newest] = [{ id: p1.app }, { id: p2.app }, { id: p3.app }];
  const keep = [p1.keep, other.keep, p2.keep, p3.keep];

  const get = (id: number) => m.get<BuildView>(`/api/v1/builds/${id}`);
  for (const [old, by] of [[old1.id, old2.id], [old2.id, newest.id]] as const) {
    const b = await get(old);
    assert.deepEqual([b.state, b.result, b.supersededBy, b.trigger], ['finished', 'superseded', by, 'change'], `build ${old}`);
    assert.match(b.message!, new RegExp(`^superseded by build ${by} \\(\\w{12}\\), a newer commit on main$`));
    assert.equal(b.startedAt, null, 'it never ran');
  }
  const kept = [forced, other.app, rebuilt, newest.id, ...keep];
  for (const id of kept) {
    const b = await get(id);
    assert.deepEqual([b.state, b.supersededBy], ['queued', null], `build ${id} (${b.builder} ${b.trigger} ${b.branch}) stays queued`);
  }
  await withWorker(t, m, 8);
  for (const id of kept) assert.equal((await m.waitFinished(id, 90_000)).result, 'success', await logOf(m, id));
  const superseded = await m.get<BuildView[]>('/api/v1/builds?builder=app&state=finished');
  assert.equal(superseded.filter((b) => b.result === 'superseded').length, 2);
});
