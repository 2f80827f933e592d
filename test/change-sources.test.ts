import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { createHmac } from 'node:crypto';
import { existsSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import type { BuildView } from '../protocol/api.js';
import { BuilderFileSchema, toBuilderDefinition } from '../protocol/builder-file.js';
import { branchMatcher } from '../master/sources/branch-glob.js';
import { parseHeads } from '../master/sources/ls-remote.js';
import { redactUrls, repoKey } from '../master/sources/repo-url.js';
import { loadWebhookSecret } from '../master/sources/webhook-secret.js';
import { startWorker } from '../worker/agent.js';
import { cleanup, tempDir, testMaster, until, writeBuilder, type TestMaster } from './helpers/cluster.js';
import { gitRepo, gitServer } from './helpers/git-repo.js';


interface SourceView { git: string; branch: string; branches: string[]; lastPolledAt: string | null; lastSha: string | null; heads: Record<string, string>; error: string | null }

async function sourceOf(m: TestMaster, builder: string): Promise<SourceView> {
  const list = await m.get<{ name: string; source: SourceView | null }[]>('/api/v1/builders');
  const b = list.find((x) => x.name === builder);
  assert.ok(b?.source, `builder ${builder} has a source`);
  return b.source;
}

/** Waits until the builder's repository has been polled `n` more times. */
async function polls(m: TestMaster, builder: string, n = 1): Promise<SourceView> {
  let last = (await sourceOf(m, builder)).lastPolledAt;
  let view: SourceView | null = null;
  for (let i = 0; i < n; i++) {
    view = await until(`poll of ${builder}`, async () => {
      const s = await sourceOf(m, builder);
      return s.lastPolledAt !== null && s.lastPolledAt !== last ? s : null;
    }, 10_000);
    last = view.lastPolledAt;
  }
  return view!;
}

const builds = (m: TestMaster, builder: string) => m.get<BuildView[]>(`/api/v1/builds?builder=${builder}`);

/** Oldest first: [revision, reason]. */
async function revisions(m: TestMaster, builder: string): Promise<[string | null, string | null][]> {
  return (await builds(m, builder)).reverse().map((b) => [b.revision, b.reason]);
}

const polled = (url: string, extra = 'branch: main') =>
  `source: { git: "${url}", ${extra}, poll: 1s }\nrequires: { executor: host }\nsteps:\n  - run: git rev-parse HEAD\n`;

test('polling: first sight queues nothing, each new head queues one build of exactly that sha', async (t) => {
  const repo = await gitRepo();
  const a = repo.commit();
  const m = await testMaster({ app: polled(repo.url) });
  t.after(async () => { await m.close(); cleanup(repo.dir); });

  const first = await polls(m, 'app');
  assert.equal(first.error, null);
  assert.equal(first.lastSha, a);
  await polls(m, 'app', 2);
  assert.deepEqual(await builds(m, 'app'), [], 'the history already there is recorded, not built');

  const b = repo.commit();
  await until('a build of the new commit', async () => (await builds(m, 'app')).length > 0);
  await polls(m, 'app', 2);
  assert.deepEqual(await revisions(m, 'app'), [[b, 'new commit on main']]);
  assert.equal((await sourceOf(m, 'app')).lastSha, b);

  // Two commits land between polls (moved onto main in one ref update): one build, of the newest.
  repo.git('checkout', '--quiet', '-b', 'work');
  repo.commit();
  const d = repo.commit();
  repo.git('update-ref', 'refs/heads/main', d);
  await until('a build of the newest head', async () => (await builds(m, 'app')).length > 1);
  await polls(m, 'app', 2);
  assert.deepEqual(await revisions(m, 'app'), [[b, 'new commit on main'], [d, 'new commit on main']]);

  // A force-push back to an older commit builds that head once.
  repo.git('update-ref', 'refs/heads/main', b);
  await until('a build after the force-push', async () => (await builds(m, 'app')).length > 2);
  await polls(m, 'app', 2);
  assert.deepEqual((await revisions(m, 'app')).map(([r]) => r), [b, d, b]);
});

test('a master restart neither rebuilds what it saw nor misses what was pushed while it was down', async (t) => {
  const repo = await gitRepo();
  const dir = tempDir('restart');
  repo.commit();
  t.after(() => cleanup(repo.dir, dir));
  const first = await testMaster({ app: polled(repo.url) }, { dir });
  await polls(first, 'app');
  const b = repo.commit();
  await until('a build of b', async () => (await builds(first, 'app')).length === 1);
  await first.close();

  const c = repo.commit();
  const saved = JSON.parse(readFileSync(join(dir, 'data', 'sources.json'), 'utf8')) as { builders: Record<string, Record<string, { heads: Record<string, string> }>> };
  assert.deepEqual(Object.values(saved.builders.app!).map((r) => r.heads), [{ main: b }]);

  const second = await testMaster({ app: polled(repo.url) }, { dir });
  t.after(() => second.close());
  await until('a build of c', async () => (await builds(second, 'app')).length === 2);
  await polls(second, 'app', 2);
  assert.deepEqual((await revisions(second, 'app')).map(([r]) => r), [b, c]);

  // A restart with nothing new queues nothing.
  await second.close();
  const third = await testMaster({ app: polled(repo.url) }, { dir });
  t.after(() => third.close());
  await polls(third, 'app', 2);
  assert.equal((await builds(third, 'app')).length, 2);
});

test('several branches: a glob watches new commits and new branches; others are ignored', async (t) => {
  const repo = await gitRepo();
  const main = repo.commit();
  repo.git('branch', 'release-1');
  const m = await testMaster({ rel: polled(repo.url, 'branches: [main, "release-*"]') });
  t.after(async () => { await m.close(); cleanup(repo.dir); });
  const seen = await polls(m, 'rel');
  assert.deepEqual(seen.heads, { main, 'release-1': main });
  assert.deepEqual([seen.branch, seen.branches], ['main', ['main', 'release-*']]);

  repo.git('checkout', '--quiet', 'release-1');
  const r1 = repo.commit();
  repo.git('checkout', '--quiet', '-b', 'feature');
  repo.commit();
  repo.git('checkout', '--quiet', '-b', 'release-2', 'release-1');
  const r2 = repo.commit();
  await until('two builds', async () => (await builds(m, 'rel')).length >= 2);
  await polls(m, 'rel', 2);
  assert.deepEqual(await revisions(m, 'rel'), [[r1, 'new commit on release-1'], [r2, 'new branch release-2']]);
});

test('a builder file added while the master runs is watched from then on', async (t) => {
  const repo = await gitRepo();
  const a = repo.commit();
  const m = await testMaster({});
  t.after(async () => { await m.close(); cleanup(repo.dir); });
  writeBuilder(m.configDir, 'late', polled(repo.url));
  await until('the new builder', async () => (await m.get<{ name: string }[]>('/api/v1/builders')).some((b) => b.name === 'late'));
  assert.equal((await polls(m, 'late')).lastSha, a);
  const b = repo.commit();
  await until('a build of b', async () => (await builds(m, 'late')).length === 1);
  assert.deepEqual(await revisions(m, 'late'), [[b, 'new commit on main']]);
});

test('an unreachable repository is reported on the builder; nothing is queued', async (t) => {
  const { server } = await gitServer();
  const m = await testMaster({ gone: polled(server.urlOf('missing.git')) });
  t.after(async () => { await m.close(); });
  const s = await polls(m, 'gone');
  assert.match(s.error ?? '', /git ls-remote http:\/\/127\.0\.0\.1:\d+\/missing\.git: .*not found/);
  assert.equal(s.lastSha, null);
  assert.deepEqual(await builds(m, 'gone'), []);
});

const SHA1 = 'a'.repeat(40);
const SHA2 = 'b'.repeat(40);
const webhookOnly = (git: string, extra = 'branch: main') =>
  `source: { git: "${git}", ${extra} }\nrequires: { executor: host }\nsteps:\n  - run: git rev-parse HEAD\n`;

function secretOf(m: TestMaster): string {
  return process.env.CROWDBAKE_WEBHOOK_SECRET?.trim() || readFileSync(join(m.dataDir, 'webhook.secret'), 'utf8').trim();
}

async function hook(m: TestMaster, provider: string, headers: Record<string, string>, body: string | Buffer) {
  const r = await fetch(`${m.url}/api/v1/hooks/${provider}`, { method: 'POST', headers: { 'content-type': 'application/json', ...headers }, body });
  return { status: r.status, body: (await r.json()) as { error?: string; queued?: { builder: string; id: number; revision: string; branch: string }[]; ignored?: string; skipped?: unknown[] } };
}

const hmac = (secret: string, body: string) => createHmac('sha256', secret).update(body).digest('hex');
const githubPush = (cloneUrl: string, ref: string, after: string) =>
  JSON.stringify({ ref, before: '0'.repeat(40), after, repository: { clone_url: cloneUrl, ssh_url: 'git@elsewhere.example:x/y.git', html_url: cloneUrl.replace(/\.git$/, '') }, commits: [] });

test('webhooks: GitHub, GitLab and Gitea pushes are verified and queue the pushed sha for every builder watching it', async (t) => {
  const m = await testMaster({
    app: webhookOnly('https://Git.Example.org/team/app.git'),
    'app-git': webhookOnly('git://git.example.org/team/app', 'branches: [main, "release-*"]'),
    other: webhookOnly('https://git.example.org/team/other.git'),
  });
  t.after(() => m.close());
  const secret = secretOf(m);
  if (!process.env.CROWDBAKE_WEBHOOK_SECRET) assert.equal(statSync(join(m.dataDir, 'webhook.secret')).mode & 0o777, 0o600);

  const body = githubPush('https://git.example.org/team/app.git/', 'refs/heads/main', SHA1);
  const gh = (b: string, extra: Record<string, string> = {}) =>
    hook(m, 'github', { 'x-github-event': 'push', 'x-hub-signature-256': `sha256=${hmac(secret, b)}`, ...extra }, b);
  const ok = await gh(body);
  assert.equal(ok.status, 202);
  assert.deepEqual(ok.body.queued!.map((q) => [q.builder, q.revision, q.branch]).sort(), [['app', SHA1, 'main'], ['app-git', SHA1, 'main']]);
  assert.deepEqual((await builds(m, 'app')).map((b) => [b.revision, b.reason, b.state]), [[SHA1, 'push to main (github webhook)', 'queued']]);
  assert.equal((await sourceOf(m, 'app')).lastSha, SHA1);

  // The same push again (a redelivery) builds nothing more.
  const again = await gh(body);
  assert.deepEqual([again.status, again.body.queued, again.body.skipped?.length], [202, [], 2]);

  const forged = await hook(m, 'github', { 'x-github-event': 'push', 'x-hub-signature-256': `sha256=${hmac('not the secret', body)}` }, body);
  assert.equal(forged.status, 401);
  assert.match(forged.body.error!, /X-Hub-Signature-256 does not match/);
  const unsigned = await hook(m, 'github', { 'x-github-event': 'push' }, body);
  assert.equal(unsigned.status, 401);
  assert.match(unsigned.body.error!, /missing X-Hub-Signature-256/);

  const ping = await gh(JSON.stringify({ zen: 'hi', hook_id: 1 }), { 'x-github-event': 'ping' });
  assert.deepEqual([ping.status, ping.body.queued], [202, []]);
  assert.match(ping.body.ignored!, /"ping" is not a push/);

  const broken = await gh('{"ref": ');
  assert.equal(broken.status, 400);
  assert.match(broken.body.error!, /not JSON/);
  const notPush = await gh(JSON.stringify({ ref: 'refs/heads/main' }));
  assert.equal(notPush.status, 400);
  assert.match(notPush.body.error!, /after/);

  const unwatched = await gh(githubPush('https://git.example.org/team/unknown.git', 'refs/heads/main', SHA2));
  assert.deepEqual([unwatched.status, unwatched.body], [202, { queued: [] }]);
  const otherBranch = await gh(githubPush('https://git.example.org/team/app.git', 'refs/heads/feature', SHA2));
  assert.deepEqual([otherBranch.status, otherBranch.body], [202, { queued: [] }]);
  const tag = await gh(githubPush('https://git.example.org/team/app.git', 'refs/tags/v1', SHA2));
  assert.match(tag.body.ignored!, /not a branch/);
  const deleted = await gh(githubPush('https://git.example.org/team/app.git', 'refs/heads/main', '0'.repeat(40)));
  assert.match(deleted.body.ignored!, /deleted/);

  // GitLab: a plain token, compared in constant time.
  const labBody = JSON.stringify({
    object_kind: 'push', ref: 'refs/heads/release-3', after: SHA2,
    project: { git_http_url: 'https://git.example.org/team/app.git', git_ssh_url: 'git@git.example.org:team/app.git', web_url: 'https://git.example.org/team/app' },
  });
  // GitLab has its own secret (its header carries it in plain); the shared one is refused for it.
  assert.equal((await hook(m, 'gitlab', { 'x-gitlab-event': 'Push Hook', 'x-gitlab-token': secret }, labBody)).status, 401);
  const labSecret = readFileSync(join(m.dataDir, 'webhook-gitlab.secret'), 'utf8').trim();
  const lab = await hook(m, 'gitlab', { 'x-gitlab-event': 'Push Hook', 'x-gitlab-token': labSecret }, labBody);
  assert.equal(lab.status, 202);
  assert.deepEqual(lab.body.queued!.map((q) => [q.builder, q.revision, q.branch]), [['app-git', SHA2, 'release-3']]);
  const badLab = await hook(m, 'gitlab', { 'x-gitlab-event': 'Push Hook', 'x-gitlab-token': 'guess' }, labBody);
  assert.equal(badLab.status, 401);
  assert.match(badLab.body.error!, /X-Gitlab-Token/);

  // Gitea: hex HMAC-SHA256 without a prefix.
  const SHA3 = 'c'.repeat(40);
  const teaBody = JSON.stringify({ ref: 'refs/heads/main', after: SHA3, repository: { clone_url: 'https://git.example.org/team/other.git', ssh_url: 'ssh://git@git.example.org:2222/team/other.git', html_url: 'https://git.example.org/team/other' } });
  const tea = await hook(m, 'gitea', { 'x-gitea-event': 'push', 'x-gitea-signature': hmac(secret, teaBody) }, teaBody);
  assert.deepEqual([tea.status, tea.body.queued!.map((q) => [q.builder, q.revision])], [202, [['other', SHA3]]]);
  const badTea = await hook(m, 'gitea', { 'x-gitea-event': 'push', 'x-gitea-signature': hmac(secret, `${teaBody} `) }, teaBody);
  assert.equal(badTea.status, 401);
  assert.match(badTea.body.error!, /X-Gitea-Signature does not match/);

  const unknown = await hook(m, 'bitbucket', {}, '{}');
  assert.equal(unknown.status, 404);
  const huge = await hook(m, 'github', { 'x-github-event': 'push' }, Buffer.alloc(1024 * 1024 + 1, 0x20));
  assert.equal(huge.status, 413);

  assert.deepEqual((await builds(m, 'app')).length, 1);
  assert.deepEqual((await builds(m, 'app-git')).map((b) => b.revision), [SHA2, SHA1]);
  assert.deepEqual((await builds(m, 'other')).map((b) => b.revision), [SHA3]);
});

test('a webhook and the poller seeing the same push build it once', async (t) => {
  const repo = await gitRepo();
  repo.commit();
  const m = await testMaster({ app: polled(repo.url) });
  t.after(async () => { await m.close(); cleanup(repo.dir); });
  await polls(m, 'app');
  const b = repo.commit();
  const body = githubPush(repo.url, 'refs/heads/main', b);
  const r = await hook(m, 'github', { 'x-github-event': 'push', 'x-hub-signature-256': `sha256=${hmac(secretOf(m), body)}` }, body);
  assert.equal(r.status, 202);
  await polls(m, 'app', 3);
  assert.deepEqual((await builds(m, 'app')).map((x) => x.revision), [b]);
});

test('a worker builds exactly the pushed revision, also on a branch other than the one it clones', async (t) => {
  const repo = await gitRepo();
  repo.commit();
  repo.git('checkout', '--quiet', '-b', 'release-1');
  const pushed = repo.commit('release fix');
  repo.commit('a later commit on release-1');
  repo.git('checkout', '--quiet', 'main');
  repo.commit('main moves on');
  const workDir = tempDir('w');
  const m = await testMaster({ rel: webhookOnly(repo.url, 'branches: [main, "release-*"]') });
  t.after(async () => { await m.close(); cleanup(repo.dir, workDir); });
  const w = await startWorker({ preferences: { when: 'always' }, idleSource: 'none', master: m.url, token: await m.token('w1'), dataDir: workDir, executor: 'host', labels: [], log: () => undefined });
  t.after(() => w.close());

  const body = JSON.stringify({ ref: 'refs/heads/release-1', after: pushed, repository: { clone_url: `${repo.url}.git` } });
  const r = await hook(m, 'gitea', { 'x-gitea-event': 'push', 'x-gitea-signature': hmac(secretOf(m), body) }, body);
  assert.equal(r.status, 202);
  const id = r.body.queued![0]!.id;
  const done = await m.waitFinished(id, 60_000);
  const log = await (await fetch(`${m.url}/api/v1/builds/${id}/log`)).text();
  assert.equal(done.result, 'success', log);
  assert.equal(done.revision, pushed);
  assert.match(log, new RegExp(`^${pushed}$`, 'm'), 'the step printed the pushed sha');
});

test('builder files: branch, branches with globs, and their errors', () => {
  const def = (source: unknown) => {
    const r = BuilderFileSchema.safeParse({ source, steps: [{ run: 'make' }] });
    return r.success ? toBuilderDefinition('b', r.data).source : r.error.issues.map((i) => `${i.path.join('.')}: ${i.message}`);
  };
  const X = 'https://example.org/x.git';
  assert.deepEqual(def({ git: X }), { git: X, branch: 'main', pollMs: null });
  assert.deepEqual(def({ git: X, branch: 'dev', poll: '1m' }), { git: X, branch: 'dev', pollMs: 60_000 });
  assert.deepEqual(def({ git: X, branches: ['release-*', 'stable'] }), { git: X, branch: 'stable', branches: ['release-*', 'stable'], pollMs: null });
  assert.deepEqual(def({ git: X, branch: 'main', branches: ['release-*'] }), { git: X, branch: 'main', branches: ['release-*'], pollMs: null });
  assert.deepEqual(def({ git: X, branches: ['release-*'] }), ['source.branches: list at least one branch without * or ? (workers clone it before checking out the revision), or add "branch:"']);
  assert.deepEqual(def({ git: X, branch: 'rel-*' }), ['source.branch: must be a plain branch name; put patterns under "branches:"']);
  assert.deepEqual(def({ git: X, branches: [] }), ['source.branches: Too small: expected array to have >=1 items']);
  assert.match(String(def({ git: X, branch: 'a b' })), /is not a branch name/);
});

test('repository URLs, branch globs, ls-remote output and the webhook secret', () => {
  const same = ['https://GitHub.com/o/r.git', 'https://github.com/o/r/', 'git@github.com:o/r.git', 'ssh://git@github.com/o/r', 'ssh://git@github.com:22/o/r.git', 'git://github.com/o/r.git', 'https://user:tok@github.com/o/r'];
  assert.deepEqual(new Set(same.map(repoKey)), new Set(['github.com/o/r']));
  assert.notEqual(repoKey('https://github.com/o/r2'), repoKey('https://github.com/o/r'));
  assert.notEqual(repoKey('ssh://git@host:2222/o/r'), repoKey('https://host/o/r'));
  assert.equal(repoKey('file:///srv/repo.git/'), repoKey('/srv/repo'));
  assert.equal(redactUrls('fatal: https://user:s3cret@example.org/x failed'), 'fatal: https://***@example.org/x failed');

  const m = branchMatcher(['main', 'release-*', 'team/**', 'v?']);
  assert.deepEqual(['main', 'release-1', 'release-1/x', 'team/a/b', 'v1', 'v10', 'mainline', 'release.1'].filter(m), ['main', 'release-1', 'team/a/b', 'v1']);

  assert.deepEqual(parseHeads(`${SHA1}\trefs/heads/main\n${SHA2}\trefs/heads/a/b\nbogus\n${SHA1}\trefs/tags/v1\n`), new Map([['main', SHA1], ['a/b', SHA2]]));

  const dir = tempDir('secret');
  try {
    const s = loadWebhookSecret(dir, {});
    assert.ok(s.length >= 32);
    assert.equal(statSync(join(dir, 'webhook.secret')).mode & 0o777, 0o600);
    assert.equal(loadWebhookSecret(dir, {}), s, 'the same secret at the next start');
    assert.equal(loadWebhookSecret(dir, { CROWDBAKE_WEBHOOK_SECRET: ' from-env ' }), 'from-env');
    writeFileSync(join(dir, 'webhook.secret'), '\n');
    assert.throws(() => loadWebhookSecret(dir, {}), /webhook\.secret is empty/);
    assert.ok(existsSync(join(dir, 'webhook.secret')));
  } finally {
    cleanup(dir);
  }
});
