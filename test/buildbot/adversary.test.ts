import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { constants, existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { checkGitArgv } from '../../worker/buildbot/host-git.js';
import { lstatBeneath, mkdirBeneath, openBeneath } from '../../worker/buildbot/safe-fs.js';
import { startBuildbotWorker, type BuildbotWorker } from '../../worker/buildbot/worker.js';
import { FakeMaster, text, type FakeConnection } from './fake-master.js';

// A malicious BuildBot master (scripted over msgpack) and malicious build code, against the
// worker's container executor with real podman and real git. Every test first shows that the
// attack was delivered (the master sent the command, the worker ran it or answered it), then
// that it failed and nothing of the volunteer's was run, read, written or removed.

process.env.CROWDBAKE_CONTAINER_FAST ??= '0';

const root = mkdtempSync(join(tmpdir(), 'crowdbake-bbadv-'));
const basedir = join(root, 'basedir');
const outside = join(root, 'outside');
const marker = join(root, 'marker');
const secret = `volunteer-secret-${randomBytes(6).toString('hex')}`;
const secretRepo = join(root, 'secret-repo');
const build = join(basedir, 'b', 'build');

type Run = Awaited<ReturnType<FakeConnection['run']>>;
const rcOf = (r: Run): unknown => r.updates.find(([k]) => k === 'rc')?.[1];
const all = (r: Run): string => JSON.stringify(r.updates) + JSON.stringify(r.complete.args ?? '') + JSON.stringify(r.response.result ?? '');
/** Everything outside the basedir as it was: the files, their content. */
const outsideTree = (): string => execFileSync('sh', ['-c', `cd ${outside} && find . -print0 | sort -z | xargs -0 ls -ld --time-style=+ 2>/dev/null; cat secret.txt`], { encoding: 'utf8' });

describe('a malicious BuildBot master and build code against the container executor (real podman)', { timeout: 600_000 }, () => {
  let master: FakeMaster;
  let worker: BuildbotWorker;
  let conn: FakeConnection;
  let seq = 0;
  const id = (): string => `a${++seq}`;
  const shell = (command: string[] | string, more: Record<string, unknown> = {}): Promise<Run> =>
    conn.run('shell', { workdir: build, command, logEnviron: true, timeout: 60, ...more }, id());
  let before0: string;

  before(async () => {
    mkdirSync(outside);
    writeFileSync(join(outside, 'secret.txt'), `${secret}\n`);
    mkdirSync(join(outside, 'victim-dir'));
    writeFileSync(join(outside, 'victim-dir', 'keep.txt'), 'keep\n');
    execFileSync('git', ['init', '-q', secretRepo]);
    writeFileSync(join(secretRepo, 'PASSWORDS'), `${secret}\n`);
    execFileSync('git', ['-C', secretRepo, 'add', '.']);
    execFileSync('git', ['-C', secretRepo, '-c', 'user.name=v', '-c', 'user.email=v@localhost', 'commit', '-q', '-m', 'mine']);
    before0 = outsideTree();
    master = await FakeMaster.start();
    worker = await startBuildbotWorker({ url: master.url, name: 'adv', password: 'pw', basedir, executor: 'container', log: () => {} });
    conn = await master.connection();
  });
  after(async () => {
    await worker?.close();
    await master?.close();
    rmSync(root, { recursive: true, force: true });
  });

  test('(a) ["./git", …] after a step wrote ./git: runs in the container, never on the host', async () => {
    const plant = await shell(['sh', '-c', `printf '#!/bin/sh\\ntouch ${marker}; echo ran-on-$(hostname)\\n' > git; chmod +x git; echo planted`]);
    assert.match(text(plant.updates, 'stdout'), /planted/);
    for (const argv of [['./git', 'status'], [`${build}/git`, 'status'], ['sh', '-c', './git status']]) {
      const r = await shell(argv);
      assert.equal(r.response.result, null, 'the worker took the command');
      assert.match(text(r.updates, 'header'), /argv: /, 'the command was issued');
      assert.doesNotMatch(text(r.updates, 'stderr'), /refusing to run git/, 'not host git: it ran in the container');
      assert.equal(existsSync(marker), false, `${argv.join(' ')} did not run on the host`);
    }
  });

  test('(b) ["git"] with PATH, LD_PRELOAD, GIT_* from the master: host git never sees them', async () => {
    writeFileSync(join(build, 'git'), `#!/bin/sh\ntouch ${marker}\n`, { mode: 0o755 });
    const hostile = {
      PATH: build, LD_PRELOAD: join(build, 'evil.so'), GIT_SSH_COMMAND: `touch ${marker}`, GIT_EXEC_PATH: build,
      GIT_CONFIG_PARAMETERS: `'core.fsmonitor'='touch ${marker}'`, GIT_CONFIG_COUNT: '1', GIT_CONFIG_KEY_0: 'core.pager', GIT_CONFIG_VALUE_0: `touch ${marker}`,
      GIT_DIR: secretRepo, HOME: root, GIT_AUTHOR_NAME: 'Allowed Name',
    };
    const init = await shell(['git', 'init', '-q'], { env: hostile });
    assert.equal(rcOf(init), 0, all(init));
    const version = await shell(['git', '--version'], { env: hostile });
    assert.match(text(version.updates, 'stdout'), /^git version \d/m, 'the real git ran, not ./git from PATH');
    const status = await shell(['git', 'status', '--porcelain'], { env: hostile });
    assert.equal(rcOf(status), 0, all(status));
    const header = text(status.updates, 'header');
    assert.match(header, /^ {2}GIT_AUTHOR_NAME=Allowed Name$/m, 'the allowlisted key is passed and shown');
    for (const k of ['LD_PRELOAD', 'GIT_SSH_COMMAND', 'GIT_EXEC_PATH', 'GIT_CONFIG_PARAMETERS', 'GIT_DIR']) assert.doesNotMatch(header, new RegExp(`^ {2}${k}=`, 'm'), `${k} is not in git's environment`);
    assert.match(header, /^ {2}PATH=\/usr\/bin:\/bin$/m);
    assert.doesNotMatch(text(status.updates, 'stderr'), /ld\.so|preload/i, 'LD_PRELOAD did not reach the loader');
    assert.doesNotMatch(text(status.updates, 'stdout'), /PASSWORDS/, 'GIT_DIR did not point git at the secret repository');
    const fetch = await shell(['git', 'fetch', 'ssh://127.0.0.1:1/x'], { env: hostile });
    assert.notEqual(rcOf(fetch), 0);
    assert.equal(existsSync(marker), false, 'nothing the master sent ran on the host');
    // Options and -c settings that run programs are refused before git starts.
    for (const [argv, why] of [
      [['git', '-c', `core.fsmonitor=touch ${marker}`, 'status'], /-c core\.fsmonitor/],
      [['git', '-c', `alias.x=!touch ${marker}`, 'x'], /-c alias\.x/],
      [['git', 'fetch', `--upload-pack=touch ${marker}`, 'origin'], /--upload-pack/],
      [['git', 'fetch', `--upload-p=touch ${marker}`, 'origin'], /--upload-p\b/],
      [['git', 'submodule', 'foreach', `touch ${marker}`], /submodule foreach runs a shell/],
      [['git', '-C', secretRepo, 'log'], /global option -C/],
      [['git', 'difftool'], /subcommand \W*difftool/],
      [['git', 'archive', '-o', join(outside, 'x.tar'), 'HEAD'], /subcommand \W*archive/],
      [['git', 'config', 'core.sshCommand', `touch ${marker}`], /core\.sshcommand/],
    ] as [string[], RegExp][]) {
      const r = await shell(argv);
      assert.match(all(r), why, `${argv.join(' ')}: ${all(r)}`);
    }
    assert.equal(existsSync(marker), false);
    assert.equal(outsideTree(), before0);
  });

  test('(d) git clone or fetch of a local repository (the volunteer\'s) is refused', async () => {
    for (const argv of [
      ['git', 'clone', secretRepo, 'cl1'], ['git', 'clone', `file://${secretRepo}`, 'cl2'], ['git', 'clone', '../../../secret-repo', 'cl3'],
      ['git', 'fetch', secretRepo], ['git', 'remote', 'add', 'v', secretRepo], ['git', 'clone', '--reference', secretRepo, 'git://127.0.0.1:1/x', 'cl4'],
    ]) {
      const r = await shell(argv);
      assert.equal(r.response.result, null, 'the command was delivered');
      assert.match(all(r), /refusing to run git on the host.*(local repository|--reference)/, `${argv.join(' ')}: ${all(r)}`);
    }
    // A remote the build code wrote into .git/config: git itself refuses the file transport.
    const plant = await shell(['sh', '-c', `printf '[remote "loc"]\\n\\turl = ${secretRepo}\\n' >> .git/config; echo planted`]);
    assert.match(text(plant.updates, 'stdout'), /planted/);
    const direct = await shell(['git', 'fetch', 'loc']);
    assert.notEqual(rcOf(direct), 0);
    assert.match(text(direct.updates, 'stderr'), /transport 'file' not allowed/);
    assert.doesNotMatch(execFileSync('find', [join(basedir, 'b')], { encoding: 'utf8' }), /PASSWORDS/);
    assert.equal(existsSync(marker), false);
  });

  test('(c) host-side file commands run while the build\'s container is frozen', async () => {
    // A process the build leaves running; while the master holds a download open (its answer
    // to update_read_file held back), the builder's container must be paused (cgroup freezer),
    // and running again once the download is over.
    const bg = await shell(['sh', '-c', 'sh -c "while :; do sleep 1; done" >/dev/null 2>&1 </dev/null & sleep 0.2; echo left-running']);
    assert.match(text(bg.updates, 'stdout'), /left-running/);
    const name = execFileSync('podman', ['ps', '-a', '--filter', `name=crowdbake-bb-adv-${process.pid}-`, '--format', '{{.Names}}'], { encoding: 'utf8' }).trim();
    const state = (): string => execFileSync('podman', ['inspect', '--format', '{{.State.Status}}', name], { encoding: 'utf8' }).trim();
    assert.equal(state(), 'running', 'the builder\'s container is up, the process in it');
    let release!: () => void;
    const reading = new Promise<void>((ok) => { release = ok; });
    let askedForData!: () => void;
    const asked = new Promise<void>((ok) => { askedForData = ok; });
    const origSend = conn.ws.send.bind(conn.ws);
    // The answer to the first update_read_file is held back until we have looked: the fake
    // master sends it right after answer() returns, so only that one send is delayed (the
    // first version delayed the start_command too, and so waited for ever).
    let delayed = false;
    conn.answer = (m) => {
      if (m.op === 'update_read_file' && !delayed) {
        delayed = true;
        conn.ws.send = ((data: Buffer, ...rest: never[]) => {
          conn.ws.send = origSend;
          void reading.then(() => origSend(data, ...rest));
        }) as typeof conn.ws.send;
        askedForData();
      }
      return null;
    };
    const dl = conn.run('download_file', { path: join(build, 'frozen.txt'), workdir: 'build', blocksize: 1024, maxsize: null, mode: null }, id());
    await asked;
    const during = state();
    release();
    const r = await dl;
    conn.answer = undefined;
    assert.equal(rcOf(r), 0, all(r));
    assert.equal(during, 'paused', 'the build\'s container was frozen during the host-side download');
    assert.equal(state(), 'running', 'and runs again afterwards');
    const after0 = await shell(['sh', '-c', 'echo still-here']);
    assert.match(text(after0.updates, 'stdout'), /still-here/);
  });

  test('(c) a process swapping a directory for a symlink: nothing outside is written, read or removed', async () => {
    // The racer flips build/d between a real directory (holding the names the master uses)
    // and a symlink to the volunteer's directory, as fast as it can, between and during commands.
    const race = `while [ ! -e /work/stop-race ]; do rm -rf /work/build/d; mkdir -p /work/build/d/victim-dir; echo inside > /work/build/d/secret.txt; rm -rf /work/build/d; ln -s ${outside} /work/build/d; done`;
    const bg = await shell(['sh', '-c', `sh -c '${race}' >/dev/null 2>&1 </dev/null & sleep 0.5; echo racing`]);
    assert.match(text(bg.updates, 'stdout'), /racing/);
    const d = join(build, 'd');
    let uploads = '';
    conn.answer = (m) => {
      if (m.op === 'update_upload_file_write') uploads += Buffer.from(m.args as Uint8Array).toString();
      return m.op === 'update_read_file' ? Buffer.from('pwned\n') : null;
    };
    for (let i = 0; i < 15; i++) {
      const ops = await Promise.all([
        conn.run('download_file', { path: join(d, 'pwned.txt'), workdir: 'build', blocksize: 16, maxsize: 6, mode: 0o644 }, id()),
        conn.run('upload_file', { path: join(d, 'secret.txt'), workdir: 'build', blocksize: 4096, maxsize: null, keepstamp: false }, id()),
        conn.run('mkdir', { paths: [join(d, 'newdir')] }, id()),
        conn.run('rmfile', { path: join(d, 'secret.txt') }, id()),
        conn.run('rmdir', { paths: [join(d, 'victim-dir')], timeout: 10 }, id()),
        conn.run('cpdir', { from_path: d, to_path: join(build, `copy${i}`), timeout: 10 }, id()),
        conn.run('stat', { path: join(d, 'secret.txt') }, id()),
        conn.run('listdir', { path: d }, id()),
        conn.run('upload_directory', { path: d, workdir: 'build', blocksize: 4096, maxsize: null, compress: null }, id()),
      ]);
      assert.ok(ops.every((o) => o.response.result === null), 'every command was delivered and taken');
    }
    const logged = await shell(['sh', '-c', 'sleep 3'], { logfiles: { leak: 'd/secret.txt' } });
    conn.answer = undefined;
    writeFileSync(join(basedir, 'b', 'stop-race'), '');
    assert.equal(rcOf(logged), 0);
    // The race was on: some commands met the symlink (and were refused), not only the directory.
    assert.match(JSON.stringify(conn.received), /leads outside its builder directory|symlink/, 'the racer swapped the symlink in while commands ran');
    assert.equal(outsideTree(), before0, 'the volunteer\'s directory: nothing written, removed or changed');
    assert.ok(!uploads.includes(secret), 'nothing of the volunteer reached the master in an upload');
    assert.ok(!JSON.stringify(conn.received).includes(secret), 'nor in any message (logfiles, listdir, stat)');
    for (const i of readdirSync(build).filter((n) => n.startsWith('copy'))) {
      assert.ok(!execFileSync('sh', ['-c', `cat ${join(build, i)}/* 2>/dev/null || true`], { encoding: 'utf8' }).includes(secret), 'cpdir copied nothing of the volunteer');
    }
  });
});

describe('safe-fs: paths walked by descriptor, no symlink followed', () => {
  test('a symlink at any component fails the open; .. and paths outside are refused', () => {
    const dir = mkdtempSync(join(tmpdir(), 'crowdbake-safefs-'));
    try {
      mkdirSync(join(dir, 'base', 'b', 'real'), { recursive: true });
      mkdirSync(join(dir, 'out'));
      writeFileSync(join(dir, 'out', 's'), 'secret');
      symlinkSync(join(dir, 'out'), join(dir, 'base', 'b', 'link'));
      symlinkSync(join(dir, 'out', 's'), join(dir, 'base', 'b', 'real', 'f'));
      const base = join(dir, 'base');
      assert.throws(() => openBeneath(base, join(base, 'b', 'link', 's'), constants.O_RDONLY), /symlink/);
      assert.throws(() => openBeneath(base, join(base, 'b', 'real', 'f'), constants.O_RDONLY), /symlink/);
      assert.throws(() => openBeneath(base, join(base, 'b', 'link', 'new'), constants.O_WRONLY | constants.O_CREAT, { mkdirs: true }), /symlink/);
      assert.throws(() => openBeneath(base, join(base, '..', 'out', 's'), constants.O_RDONLY), /outside the worker's basedir/);
      assert.throws(() => mkdirBeneath(base, join(base, 'b', 'link', 'x', 'y')), /symlink/);
      assert.equal(existsSync(join(dir, 'out', 'new')) || existsSync(join(dir, 'out', 'x')), false);
      assert.ok(lstatBeneath(base, join(base, 'b', 'link'))?.isSymbolicLink());
      mkdirBeneath(base, join(base, 'b', 'real', 'x', 'y'));
      assert.ok(existsSync(join(base, 'b', 'real', 'x', 'y')));
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  test('host git argv policy: what BuildBot\'s Git step sends passes, the rest is refused', () => {
    for (const argv of [['git', '--version'], ['git', 'clone', '--branch', 'main', '--depth', '1', '--progress', 'https://example.org/r.git', '.'],
      ['git', 'fetch', '-f', '-t', 'git://example.org/r.git', 'main'], ['git', 'checkout', '-f', 'FETCH_HEAD'], ['git', 'checkout', '-B', 'main'],
      ['git', 'reset', '--hard', 'abc', '--'], ['git', 'clean', '-f', '-f', '-d', '-x'], ['git', 'rev-parse', 'HEAD'], ['git', 'log', '-1', '--format=%ct'],
      ['git', 'submodule', 'sync'], ['git', 'submodule', 'update', '--init', '--recursive', '--force'], ['git', 'submodule', 'foreach', '--recursive', 'git clean -f -f -d -x'],
      ['git', 'cat-file', '-e', 'abc'], ['git', 'update-index', '--refresh'], ['git', 'apply', '--index', '-p', '1'], ['git', '-c', 'http.sslVerify=false', 'fetch', 'https://e/r', 'x'],
      ['git', 'push', '-u', 'origin', 'main'], ['git', 'add', '-u']]) {
      assert.doesNotThrow(() => checkGitArgv(argv), argv.join(' '));
    }
    for (const argv of [['git', '--exec-path=/tmp', 'status'], ['git', 'clone', '-u', 'sh', 'https://e/r'], ['git', 'tag', '-s', 'v1'], ['git', 'commit', '-S'],
      ['git', 'clone', '--template=/tmp/t', 'https://e/r'], ['git', 'clone', '--config', 'core.hooksPath=/tmp', 'https://e/r'], ['git', 'rebase', '-x', 'sh']]) {
      assert.throws(() => checkGitArgv(argv), /refusing to run git on the host/, argv.join(' '));
    }
  });
});
