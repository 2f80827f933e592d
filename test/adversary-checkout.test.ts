import { test, type TestContext } from 'node:test';
import assert from 'node:assert/strict';
import { execFile, execFileSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { existsSync, mkdirSync, readdirSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { networkInterfaces } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { WebSocketServer, type WebSocket } from 'ws';
import type { BuilderView } from '../protocol/api.js';
import type { BuildSpec } from '../protocol/build-spec.js';
import { PROTOCOL_VERSION } from '../protocol/version.js';
import { startGitHttpServer, type GitHttpServer } from '../master/sources/git-http-server.js';
import { startWorker } from '../worker/agent.js';
import { cleanup, tempDir, testMaster, until, type TestMaster } from './helpers/cluster.js';

// Adversaries against the build's checkout, which runs on the volunteer's host before any
// sandbox exists: a builder file naming local repositories or ssh, a malicious master
// sending such a spec (or a loopback URL) straight to a worker, a volunteer whose own git
// configuration (credential helper, insteadOf, sshCommand, SSH agent) would take part, and
// credentials inside a source URL that must not be shown. Each test first shows the attack
// was delivered, then that it failed and nothing of the volunteer's leaked.

const SECRET = `VOLUNTEER-SECRET-${randomBytes(8).toString('hex')}`;

/** A repository in `root/name` with `file.txt` holding `content`; returns its dir. */
function makeRepo(root: string, name: string, content: string): string {
  const dir = join(root, name);
  mkdirSync(dir, { recursive: true });
  const git = (...args: string[]) => execFileSync('git', ['-c', 'user.name=t', '-c', 'user.email=t@example.org', ...args], { cwd: dir, stdio: 'pipe', env: cleanGitEnv() });
  git('init', '--quiet', '--initial-branch=main');
  writeFileSync(join(dir, 'file.txt'), `${content}\n`);
  writeFileSync(join(dir, 'secret.txt'), `${content}\n`);
  git('add', '.');
  git('commit', '--quiet', '-m', 'one');
  return dir;
}

/** The test's own git commands never see the planted volunteer configuration. */
function cleanGitEnv(): NodeJS.ProcessEnv {
  return { PATH: process.env.PATH, HOME: '/nonexistent', GIT_CONFIG_NOSYSTEM: '1', GIT_CONFIG_GLOBAL: '/dev/null' };
}

/** Every file under `dir` (the worker's data: work root, history database, logs) that holds `needle`. */
function filesHolding(dir: string, needle: string): string[] {
  const hits: string[] = [];
  const walk = (d: string) => {
    for (const e of readdirSync(d, { withFileTypes: true })) {
      const p = join(d, e.name);
      if (e.isDirectory()) walk(p);
      else if (e.isFile() && statSync(p).size < 64 * 1024 * 1024 && readFileSync(p).includes(needle)) hits.push(p);
    }
  };
  if (existsSync(dir)) walk(dir);
  return hits;
}

/**
 * The volunteer's own setup, planted in the worker process's environment: a ~/.gitconfig
 * whose credential helper and `sshCommand` would leave marker files and whose `insteadOf`
 * would swap a public URL for the volunteer's secret repository, GIT_CONFIG_PARAMETERS and
 * GIT_SSH_COMMAND doing the same, and an SSH agent socket. Restored after the test.
 */
function plantVolunteerConfig(t: TestContext, opts: { insteadOf?: [string, string] } = {}) {
  const home = tempDir('volunteer-home');
  const marks = { helper: join(home, 'HELPER-RAN'), ssh: join(home, 'SSH-RAN'), param: join(home, 'PARAM-HELPER-RAN'), sshEnv: join(home, 'GIT_SSH_COMMAND-RAN') };
  writeFileSync(join(home, '.gitconfig'), [
    '[credential]',
    `\thelper = "!f() { touch '${marks.helper}'; echo username=u; echo password=right; }; f"`,
    '[core]',
    `\tsshCommand = touch '${marks.ssh}'`,
    ...(opts.insteadOf ? [`[url "${opts.insteadOf[1]}"]`, `\tinsteadOf = ${opts.insteadOf[0]}`] : []),
    '',
  ].join('\n'));
  const saved: Record<string, string | undefined> = {};
  const set = (k: string, v: string) => { saved[k] = process.env[k]; process.env[k] = v; };
  set('HOME', home);
  set('SSH_AUTH_SOCK', join(home, 'agent.sock'));
  set('GIT_SSH_COMMAND', `touch '${marks.sshEnv}'`);
  // A helper gets its action as an argument (get, store, erase): the function ignores it, so a
  // run helper leaves its mark and nothing else (`touch MARK store` made ./store in the tree).
  set('GIT_CONFIG_PARAMETERS', `'credential.helper'='!f() { touch ${marks.param}; }; f'`);
  t.after(() => {
    for (const [k, v] of Object.entries(saved)) { if (v === undefined) delete process.env[k]; else process.env[k] = v; }
    cleanup(home);
  });
  // The planted configuration is live: git run with the volunteer's own environment uses it.
  execFileSync('git', ['config', '--global', '--get', 'credential.helper'], { env: process.env });
  return { home, marks, ran: () => Object.values(marks).filter((m) => existsSync(m)) };
}

// ---------------------------------------------------------------------------------------
// (a) malicious builder files

test('builder files naming a local path, file://, ext::, scp-like or ssh:// sources are refused by the master, naming file and field', async (t) => {
  const bad: Record<string, string> = {
    relative: '../../../.password-store',
    home: '/home/x/repo',
    fileurl: 'file:///home/x/repo',
    ext: 'ext::sh -c touch% /tmp/crowdbake-pwned',
    scp: 'git@host:x',
    ssh: 'ssh://git@example.org/x',
  };
  const builders = Object.fromEntries(Object.entries(bad).map(([name, git]) => [name, `source: { git: "${git}" }\nrequires: { executor: host }\nsteps:\n  - run: cat secret.txt\n`]));
  const m = await testMaster(builders);
  t.after(() => m.close());
  const views = await m.get<BuilderView[]>('/api/v1/builders');
  for (const name of Object.keys(bad)) {
    const v = views.find((b) => b.name === name);
    // Delivered: the master read each file (the builder is listed)…
    assert.ok(v, `builder ${name} is listed`);
    // …and refused it: an error naming the file and source.git, no definition, nothing to run.
    assert.match(v.error ?? '', new RegExp(`builders/${name}\\.yml:\\d+:\\d+: source\\.git: `), `${name}: ${v.error}`);
    assert.match(v.error ?? '', /only https:\/\/, http:\/\/ and git:\/\/ URLs|spaces or control characters/, `${name}: ${v.error}`);
    assert.equal(v.source, null);
    const r = await fetch(`${m.url}/api/v1/builders/${name}/builds`, {
      method: 'POST', headers: { authorization: `Bearer ${m.adminToken}`, 'content-type': 'application/json' }, body: '{}',
    });
    assert.notEqual(r.status, 201, `a build of ${name} could be forced`);
  }
  assert.match(views.find((b) => b.name === 'relative')!.error!, /is a local path/);
  assert.match(views.find((b) => b.name === 'scp')!.error!, /scp-like ssh address/);
  assert.match(views.find((b) => b.name === 'ssh')!.error!, /ssh:\/\/ URL/);
  assert.match(views.find((b) => b.name === 'fileurl')!.error!, /local file:\/\/ URL/);
  assert.ok(!existsSync('/tmp/crowdbake-pwned'));
});

// ---------------------------------------------------------------------------------------
// (b) a malicious native master

interface FakeMaster {
  url: string;
  /** Every frame the worker sent, as text (JSON messages and `L…` log frames). */
  frames: string[];
  /** Sends an assignment once the worker said hello; resolves when the frame is on the wire. */
  assign(buildId: number, spec: unknown): Promise<void>;
  finished(buildId: number, timeoutMs?: number): Promise<{ result: string; message: string | null }>;
  close(): Promise<void>;
}

/** A raw WebSocket server speaking the worker protocol: hello → welcome → assign, and nothing else a real master checks. */
async function fakeMaster(host: string): Promise<FakeMaster> {
  const http = createServer((_req, res) => { res.writeHead(404); res.end(); });
  const wss = new WebSocketServer({ server: http });
  const frames: string[] = [];
  let peer: WebSocket | null = null;
  let hello!: () => void;
  const said = new Promise<void>((ok) => { hello = ok; });
  wss.on('connection', (ws) => {
    peer = ws;
    ws.on('message', (data) => {
      const text = data.toString();
      frames.push(text);
      if (text.startsWith('{') && (JSON.parse(text) as { type: string }).type === 'hello') {
        const name = (JSON.parse(text) as { name: string }).name;
        ws.send(JSON.stringify({ type: 'welcome', protocol: PROTOCOL_VERSION, name, heartbeatMs: 60_000 }), () => hello());
      }
    });
  });
  await new Promise<void>((ok) => http.listen(0, host, () => ok()));
  const port = (http.address() as AddressInfo).port;
  const finishedOf = (id: number) => frames.map((f) => (f.startsWith('{') ? JSON.parse(f) as Record<string, unknown> : null))
    .find((m) => m?.type === 'state' && m.buildId === id && m.state === 'finished') as { result: string; message: string | null } | undefined;
  return {
    url: `http://${host.includes(':') ? `[${host}]` : host}:${port}`,
    frames,
    assign: async (buildId, spec) => {
      let timer: NodeJS.Timeout | undefined;
      await Promise.race([said, new Promise((_ok, fail) => { timer = setTimeout(() => fail(new Error('the worker never said hello')), 20_000); })]);
      clearTimeout(timer);
      await new Promise<void>((ok, fail) => peer!.send(JSON.stringify({ type: 'assign', buildId, attempt: 1, spec }), (e) => (e ? fail(e) : ok())));
    },
    finished: async (id, timeoutMs = 60_000) => {
      await until(`build ${id} finished`, async () => finishedOf(id) !== undefined, timeoutMs);
      return finishedOf(id)!;
    },
    close: async () => {
      const closed = new Promise<void>((ok) => http.close(() => ok()));
      for (const c of wss.clients) c.terminate();
      wss.close();
      http.closeAllConnections();
      await closed;
    },
  };
}

const evilSpec = (git: string): BuildSpec => ({
  builder: 'evil', revision: null, source: { git, branch: 'main' }, executor: 'host',
  environment: { base: 'busybox', setup: [] }, steps: [{ name: 'show', run: 'cat secret.txt file.txt; ls -la', env: {} }],
  artifacts: ['*.txt'], limits: {}, network: false, testInstall: null,
});

async function workerFor(t: TestContext, master: string) {
  const dataDir = tempDir('evil-w');
  const lines: string[] = [];
  const w = await startWorker({
    preferences: { when: 'always' }, idleSource: 'none', master, token: `cbw1.victim.${randomBytes(8).toString('hex')}`,
    dataDir, executor: 'host', labels: [], log: (l) => lines.push(l),
  });
  t.after(async () => { await w.close(); cleanup(dataDir); });
  return { dataDir, lines };
}

/** A non-loopback IPv4 address of this computer, for a master that is not on loopback. */
function outsideAddress(): string | null {
  for (const list of Object.values(networkInterfaces())) {
    for (const a of list ?? []) if (a.family === 'IPv4' && !a.internal) return a.address;
  }
  return null;
}

test('a malicious master assigns a local path or file:// URL of the volunteer\'s secret repository: the worker refuses it; nothing of it leaks', async (t) => {
  const root = tempDir('secret-repos');
  t.after(() => cleanup(root));
  const secretRepo = makeRepo(root, 'password-store', SECRET);
  const home = plantVolunteerConfig(t);
  const fm = await fakeMaster('127.0.0.1');
  t.after(() => fm.close());
  const w = await workerFor(t, fm.url);
  const attacks = [secretRepo, `file://${secretRepo}`, `${secretRepo}/../password-store`, 'ext::sh -c cat% /etc/passwd', `ssh://git@127.0.0.1:1${secretRepo}`, 'git@127.0.0.1:x'];
  for (const [i, git] of attacks.entries()) {
    // Delivered: the assignment went out on the worker's connection and the worker read it.
    await fm.assign(i + 1, evilSpec(git));
    await until(`the worker read assignment ${i + 1}`, async () => w.lines.filter((l) => /ignored a bad frame from the master/.test(l)).length > i, 20_000);
  }
  const refusals = w.lines.filter((l) => /ignored a bad frame from the master/.test(l));
  assert.equal(refusals.length, attacks.length, refusals.join('\n'));
  assert.match(refusals[0]!, /spec\.source\.git: .*is a local path/);
  assert.match(refusals[1]!, /spec\.source\.git: .*local file:\/\/ URL/);
  assert.match(refusals[3]!, /spec\.source\.git: .*(spaces|remote helper)/);
  assert.match(refusals[4]!, /spec\.source\.git: .*ssh:\/\/ URL/);
  assert.match(refusals[5]!, /spec\.source\.git: .*scp-like/);
  // The master is told why, for each build …
  for (const [i] of attacks.entries()) {
    const done = await fm.finished(i + 1, 20_000);
    assert.equal(done.result, 'error');
    assert.match(done.message ?? '', /^refused by worker victim: .*spec\.source\.git: .*only https:\/\/, http:\/\/ and git:\/\/ URLs|^refused by worker victim: .*spec\.source\.git: must not contain spaces/, done.message ?? '');
  }
  // … and nothing ran: no build was accepted, no revision, log or artifact, and no byte of
  // the secret anywhere the master could see or in the worker's data (work root, history).
  const types = fm.frames.filter((f) => f.startsWith('{')).map((f) => (JSON.parse(f) as { type: string }).type);
  assert.deepEqual(types.filter((x) => x !== 'hello' && x !== 'availability' && x !== 'state'), []);
  assert.ok(!fm.frames.some((f) => f.startsWith('L')), 'no log frame');
  assert.ok(!fm.frames.some((f) => f.includes(SECRET)));
  assert.deepEqual(filesHolding(w.dataDir, SECRET), []);
  // Neither the volunteer's ssh command nor their credential helper ran.
  assert.deepEqual(home.ran(), []);
});

test('a master that is not on loopback cannot make the worker fetch from the volunteer\'s loopback; a loopback master can (the control)', async (t) => {
  const outside = outsideAddress();
  if (!outside) { t.skip('this computer has no non-loopback IPv4 address'); return; }
  const root = tempDir('local-service');
  t.after(() => cleanup(root));
  makeRepo(root, 'internal.git', SECRET);
  const local = await startGitHttpServer({ root });
  t.after(() => local.close());

  // The control: a master on loopback (a developer's own farm) may use a loopback source, and
  // then the repository's bytes do reach the log (so the checks below can fail).
  const dev = await fakeMaster('127.0.0.1');
  t.after(() => dev.close());
  const dw = await workerFor(t, dev.url);
  await dev.assign(1, evilSpec(local.urlOf('internal.git')));
  const ok = await dev.finished(1);
  assert.equal(ok.result, 'success', ok.message ?? '');
  assert.ok(dev.frames.some((f) => f.includes(SECRET)), 'the control build printed the repository');
  void dw;

  const requestsBefore = local.requests.length;
  const fm = await fakeMaster(outside);
  t.after(() => fm.close());
  const w = await workerFor(t, fm.url);
  const urls = [local.urlOf('internal.git'), local.urlOf('internal.git').replace('127.0.0.1', 'localhost'), `http://[::1]:${local.port}/internal.git`, `http://127.9.9.9:${local.port}/internal.git`];
  for (const [i, git] of urls.entries()) {
    await fm.assign(i + 1, evilSpec(git));
    // Delivered: the worker accepted the build (the URL is well-formed) …
    const done = await fm.finished(i + 1);
    assert.ok(fm.frames.some((f) => f.startsWith('{') && (JSON.parse(f) as { type: string; buildId?: number }).type === 'accepted' && (JSON.parse(f) as { buildId: number }).buildId === i + 1));
    // … and refused the checkout, saying why.
    assert.equal(done.result, 'error', git);
    assert.match(done.message ?? '', /checkout refused: source .* is on this computer's loopback, and the master \(ws:\/\/.*\) is not/, done.message ?? '');
  }
  assert.equal(local.requests.length, requestsBefore, 'the worker sent no request to the loopback git server');
  assert.ok(!fm.frames.some((f) => f.includes(SECRET)));
  assert.deepEqual(filesHolding(w.dataDir, SECRET), []);
});

// ---------------------------------------------------------------------------------------
// (c) the volunteer's own git configuration, credentials and agent take no part

async function withWorker(t: TestContext, m: TestMaster) {
  const dataDir = tempDir('w');
  const w = await startWorker({ preferences: { when: 'always' }, idleSource: 'none', master: m.url, token: await m.token(`w${Date.now()}`), dataDir, executor: 'host', labels: [], log: () => undefined });
  t.after(async () => { await w.close(); cleanup(dataDir); });
  return dataDir;
}

const logOf = async (m: TestMaster, id: number) => (await fetch(`${m.url}/api/v1/builds/${id}/log`)).text();

test('the volunteer\'s ~/.gitconfig (credential helper, insteadOf, sshCommand), GIT_CONFIG_PARAMETERS, GIT_SSH_COMMAND and SSH agent take no part in a checkout', async (t) => {
  const root = tempDir('repos');
  t.after(() => cleanup(root));
  makeRepo(root, 'public.git', 'public content');
  makeRepo(root, 'secret.git', SECRET);
  const open = await startGitHttpServer({ root });
  const locked = await startGitHttpServer({ root, auth: { user: 'u', password: 'right' } });
  t.after(async () => { await open.close(); await locked.close(); });
  // The volunteer rewrites the public URL to their secret repository and has a helper that
  // knows the locked server's password.
  const home = plantVolunteerConfig(t, { insteadOf: [open.urlOf('public.git'), open.urlOf('secret.git')] });
  // Delivered: with the volunteer's own environment, git does follow that configuration.
  const probe = tempDir('probe');
  t.after(() => cleanup(probe));
  // (Asynchronously: the git server answering it runs in this process.)
  await promisify(execFile)('git', ['clone', '--quiet', open.urlOf('public.git'), join(probe, 'c')], { env: process.env });
  assert.match(readFileSync(join(probe, 'c', 'file.txt'), 'utf8'), new RegExp(SECRET), 'the planted insteadOf works for the volunteer\'s own git');
  await promisify(execFile)('git', ['clone', '--quiet', locked.urlOf('secret.git', { withAuth: false }), join(probe, 'd')], { env: process.env });
  assert.ok(existsSync(home.marks.helper), 'the planted credential helper works for the volunteer\'s own git');
  for (const mark of Object.values(home.marks)) if (existsSync(mark)) cleanup(mark);

  const m = await testMaster({
    pub: `source: { git: "${open.urlOf('public.git')}" }\nrequires: { executor: host }\nsteps:\n  - run: cat file.txt\n`,
    priv: `source: { git: "${locked.urlOf('secret.git', { withAuth: false })}" }\nrequires: { executor: host }\nsteps:\n  - run: cat file.txt\n`,
  });
  t.after(() => m.close());
  const dataDir = await withWorker(t, m);

  const pub = await m.waitFinished(await m.force('pub'));
  const pubLog = await logOf(m, pub.id);
  assert.equal(pub.result, 'success', pubLog);
  assert.match(pubLog, /^public content$/m, 'the build got the URL the master named');
  assert.ok(!pubLog.includes(SECRET), 'insteadOf did not swap in the volunteer\'s repository');

  const lockedBefore = locked.requests.length;
  const priv = await m.waitFinished(await m.force('priv'), 60_000);
  const privLog = await logOf(m, priv.id);
  // Delivered: the worker asked the server, which answered 401 …
  assert.ok(locked.requests.slice(lockedBefore).some((r) => !r.authorized), 'the worker asked the locked server');
  assert.ok(locked.requests.slice(lockedBefore).every((r) => !r.authorized), 'no request carried the volunteer\'s password');
  // … and the checkout failed at once instead of asking anyone for a password.
  assert.equal(priv.result, 'error', privLog);
  assert.match(priv.message ?? '', /checkout failed: git clone exited with 128/);
  assert.match(privLog, /terminal prompts disabled|Authentication failed|could not read Username/);
  assert.ok(!privLog.includes(SECRET));
  assert.deepEqual(home.ran(), [], 'no helper or ssh command of the volunteer ran');
  assert.deepEqual(filesHolding(dataDir, SECRET), []);
});

// ---------------------------------------------------------------------------------------
// (d) credentials inside a source URL

test('a credential in source.git is hidden in GET /api/v1/builders, the event stream and the build log, and the clone still uses it', async (t) => {
  const root = tempDir('repos');
  t.after(() => cleanup(root));
  makeRepo(root, 'private.git', 'private content');
  const token = `tok-${randomBytes(12).toString('hex')}`;
  const wrong = `wrong-${randomBytes(12).toString('hex')}`;
  const server: GitHttpServer = await startGitHttpServer({ root, auth: { user: 'ci', password: token } });
  t.after(() => server.close());
  const url = server.urlOf('private.git');
  assert.ok(url.includes(token));
  const m = await testMaster({
    priv: `source: { git: "${url}" }\nrequires: { executor: host }\nsteps:\n  - run: cat file.txt\n`,
    bad: `source: { git: "${url.replace(token, wrong)}" }\nrequires: { executor: host }\nsteps:\n  - run: cat file.txt\n`,
    query: `source: { git: "${server.urlOf('private.git', { withAuth: false })}?private_token=${token}" }\nrequires: { executor: host }\nsteps:\n  - run: "true"\n`,
  });
  t.after(() => m.close());
  await withWorker(t, m);

  const raw = await (await fetch(`${m.url}/api/v1/builders`)).text();
  assert.ok(!raw.includes(token) && !raw.includes(wrong), raw);
  const views = JSON.parse(raw) as BuilderView[];
  assert.equal(views.find((b) => b.name === 'priv')!.source!.git, `http://***@127.0.0.1:${server.port}/private.git`);
  assert.equal(views.find((b) => b.name === 'query')!.source!.git, `http://127.0.0.1:${server.port}/private.git?private_token=***`);

  const seen: string[] = [];
  t.after(m.events.subscribe((e) => { seen.push(JSON.stringify(e)); }));
  const before = server.requests.length;
  const ok = await m.waitFinished(await m.force('priv'));
  const okLog = await logOf(m, ok.id);
  assert.equal(ok.result, 'success', okLog);
  assert.match(okLog, /^private content$/m, 'the clone used the credential');
  assert.ok(server.requests.slice(before).some((r) => r.authorized));
  assert.match(okLog, new RegExp(`checkout http://\\*\\*\\*@127\\.0\\.0\\.1:${server.port}/private\\.git branch main`));
  assert.ok(!okLog.includes(token), okLog);

  const bad = await m.waitFinished(await m.force('bad'));
  const badLog = await logOf(m, bad.id);
  assert.equal(bad.result, 'error', badLog);
  assert.ok(server.requests.slice(before).some((r) => !r.authorized), 'the wrong credential was sent and refused');
  assert.ok(!badLog.includes(wrong) && !(bad.message ?? '').includes(wrong), badLog);

  const build = JSON.stringify(await m.get(`/api/v1/builds/${ok.id}`));
  assert.ok(!build.includes(token));
  assert.ok(seen.length > 0 && !seen.some((e) => e.includes(token) || e.includes(wrong)), 'no event carried a credential');
});
