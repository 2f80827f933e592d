import assert from 'node:assert/strict';
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { startBuildbotWorker, type BuildbotWorker } from '../../worker/buildbot/worker.js';
import { assertSame, expectations, runPair, step, tree, type Pair } from './compat.js';
import { RESULT, startLab, startStockWorker, until, type Lab } from './fixture.js';

// The working tree's container executor has a "fast path" whose agent does not come up here
// (it gives up after 30 s on every open); the plain podman path is what these tests exercise.
process.env.CROWDBAKE_CONTAINER_FAST ??= '0';

// One real BuildBot 3.7 master, three workers: the stock buildbot-worker 3.7 (msgpack), and
// `crowdbake worker --buildbot` with the host and with the container executor. The same
// builders run on all three; results and logs must match the stock worker's.
const OURS = ['cbhost', 'cbcont'] as const;
const BUILDERS = ['shell', 'transfer', 'fs', 'logfiles', 'timeouts', 'obfuscated', 'keepstamp'];

describe('BuildBot worker against a real BuildBot 3.7 master, compared with the stock worker', () => {
  let lab: Lab;
  let stock: { stop(): Promise<void> };
  const ours: BuildbotWorker[] = [];
  let basedirs: string[];
  const stockBuilds = new Map<string, Promise<Pair['stock']>>();
  const ourBuilds = new Map<string, Promise<Pair['ours']>>();
  const pair = async (builder: string, worker: string): Promise<Pair> =>
    ({ stock: await stockBuilds.get(builder)!, ours: await ourBuilds.get(`${builder}@${worker}`)! });

  before(async () => {
    lab = await startLab(['stock', ...OURS]);
    basedirs = ['stock', ...OURS].map((w) => join(lab.dir, w));
    const log = (): void => {};
    const [s, host, cont] = await Promise.all([
      startStockWorker(lab, 'stock', basedirs[0]!),
      startBuildbotWorker({ url: lab.msgpackUrl, name: 'cbhost', password: 'pw-cbhost', basedir: basedirs[1]!, executor: 'host', log }),
      startBuildbotWorker({ url: lab.msgpackUrl, name: 'cbcont', password: 'pw-cbcont', basedir: basedirs[2]!, executor: 'container', log }),
    ]);
    stock = s;
    ours.push(host, cont);
    await Promise.all(OURS.map((w) => lab.waitConnected(w)));
    // Everything independent is forced at once; each test awaits the builds it checks. The
    // stock worker runs 4 at a time: on a loaded 2-core machine its 7 builds take minutes.
    const run = async (builder: string): Promise<Pair['ours']> => lab.build(await lab.force(builder), { timeoutMs: 400_000 });
    for (const b of BUILDERS) {
      stockBuilds.set(b, run(`${b}@stock`));
      for (const w of OURS) ourBuilds.set(`${b}@${w}`, run(`${b}@${w}`));
    }
    for (const p of [...stockBuilds.values(), ...ourBuilds.values()]) p.catch(() => {});
  });

  after(async () => {
    for (const w of ours) await w.close();
    await stock?.stop();
    await lab?.stop();
  });

  for (const worker of OURS) {
    const container = worker === 'cbcont';
    const x = () => expectations(lab, worker, basedirs);

    test(`${worker}: ShellCommand — string and argv, env (lists, \${VAR}, unset), stdin, exit codes, want_stdout, environment header`, async () => {
      const p = await pair('shell', worker);
      x().shell(p);
      // Inside the container the builder directory is /work.
      assert.match(step(p.ours, 'pwd').logs.stdio!, container ? /^o\/work\/build$/m : new RegExp(`^o${join(lab.dir, worker)}/shell/build$`, 'm'));
    });

    test(`${worker}: FileUpload, DirectoryUpload (plain, gz, bz2), FileDownload and StringDownload (empty, as 3.7 delivers them)`, async () => {
      x().transfer(await pair('transfer', worker));
    });

    test(`${worker}: MakeDirectory, FileExists, CopyDirectory, RemoveDirectory; glob, listdir, rmfile, stat`, async () => {
      const p = await pair('fs', worker);
      assertSame(p, basedirs);
      assert.equal(step(p.ours, 'probe').logs.results, 'glob: /fs/build/newdir/f.txt /fs/build/newdir/g.txt\nlistdir: f.txt g.txt sub\nexists after rmfile: False\n');
    });

    test(`${worker}: logfiles, also with follow`, async () => {
      const p = await pair('logfiles', worker);
      assertSame(p, basedirs, [], undefined, ['stdio', 'test']);
      assert.equal(step(p.ours, 'logfiles').logs.test, 'oone\notwo\n');
      // follow: what was appended after the command started; the stock worker loses the first append.
      assert.equal(step(p.ours, 'logfiles').logs.follow, 'onew\n');
      assert.equal(step(p.stock, 'logfiles').logs.follow, '');
    });

    test(`${worker}: timeout, maxTime, sigtermTime`, async () => {
      const p = await pair('timeouts', worker);
      // The container executor stops a command by killing its container: no SIGTERM first.
      assertSame(p, basedirs, container ? ['sigterm'] : []);
      assert.match(step(p.ours, 'timeout').logs.stdio!, /^hcommand timed out: 1 seconds without output running \[b'sleep', b'30'\], attempting to kill$/m);
      assert.match(step(p.ours, 'maxtime').logs.stdio!, /^hcommand timed out: 2 seconds elapsed running /m);
      assert.match(step(p.ours, 'sigterm').logs.stdio!, container ? /^hprocess killed by signal 9$/m : /^ogot TERM$/m);
      assert.equal(step(p.ours, 'sigterm').results, RESULT.FAILURE);
      assert.equal(step(p.ours, 'after').results, RESULT.SUCCESS);
    });

    test(`${worker}: obfuscated arguments run with the real value and show the fake one`, async () => {
      x().obfuscated(await pair('obfuscated', worker));
    });

    test(`${worker}: FileUpload keepstamp — the 3.7 master fails remote_utime: EXCEPTION, as with the stock worker`, async () => {
      const p = await pair('keepstamp', worker);
      assertSame(p, basedirs, [], undefined, ['stdio']);
      assert.equal(p.ours.results, RESULT.EXCEPTION);
    });
  }

  test('Git: clone, then an incremental fetch (the container executor runs git on the host)', async () => {
    for (let i = 0; i < 2; i++) {
      const [s, h, c] = await Promise.all(['stock', ...OURS].map(async (w) => lab.build(await lab.force(`git@${w}`))));
      for (const o of [h!, c!]) {
        assertSame({ stock: s!, ours: o }, basedirs);
        assert.equal(o.results, RESULT.SUCCESS);
        assert.match(step(o, 'git').logs.stdio!, i === 0 ? /^hgit clone /m : /^hgit fetch -f -t /m);
        assert.equal(step(o, 'cat').logs.stdio!.match(/^ohello from the test repository$/m)?.length, 1);
      }
    }
  });

  test('stopping a build interrupts the command: CANCELLED, killed by signal 9, rc -1', async () => {
    await Promise.all(['stock', ...OURS].map(async (worker) => {
      const brid = await lab.force(`sleepy@${worker}`);
      let running = await lab.build(brid, { running: true });
      await until(async () => {
        running = await lab.build(brid, { running: true });
        return /using PTY/.test(running.steps.find((s) => s.name === 'sleep')?.logs.stdio ?? '');
      }, 60_000, 'the sleep step to start');
      await lab.stopBuild(running.buildid);
      const done = await lab.build(brid);
      assert.equal(done.results, RESULT.CANCELLED, worker);
      assert.match(step(done, 'sleep').logs.stdio!, /^h\nhcommand interrupted, attempting to kill\nhprocess killed by signal 9\nhprogram finished with exit code -1\nhelapsedTime=/m, worker);
    }));
  });

  test('cbcont: build code cannot make host-side work read, write or run anything outside its directory', async () => {
    const escape = await lab.build(await lab.force('escape@cbcont'));
    assert.equal(step(escape, 'upload-symlink').results, RESULT.FAILURE);
    assert.match(step(escape, 'upload-symlink').logs.stdio!, /^eCannot open file '.*leak\.txt' for upload$/m);
    assert.equal(step(escape, 'upload-through-dir').results, RESULT.FAILURE);
    const uploaded = tree(join(lab.uploadDir, 'cbcont'));
    assert.equal(uploaded['leak.txt'] ?? uploaded['leak2.txt'], undefined, 'nothing of the volunteer reached the master');
    assert.notEqual(step(escape, 'download-symlink').results, RESULT.SUCCESS);
    assert.equal(existsSync(join(lab.dir, 'created.txt')), false, 'the download did not follow the symlink');
    assert.equal(step(escape, 'logfile-symlink').logs.watched ?? '', '');
    assert.doesNotMatch(JSON.stringify(escape), /a file of the volunteer/);

    const git = await lab.build(await lab.force('evilgit@cbcont'));
    assert.equal(step(git, 'git-with-hook').results, RESULT.SUCCESS, 'hooks are off, git still works');
    assert.equal(existsSync(join(lab.dir, 'pwned-hook')), false, 'the hook did not run on the host');
    assert.equal(step(git, 'git-with-fsmonitor').results, RESULT.EXCEPTION);
    assert.match(JSON.stringify(step(git, 'git-with-fsmonitor').logs), /refusing to run git on the host: .*sets core\.fsmonitor/);
    assert.equal(existsSync(join(lab.dir, 'pwned-config')), false, 'core.fsmonitor did not run on the host');
  });
});
