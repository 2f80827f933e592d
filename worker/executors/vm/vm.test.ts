import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { cpSync, existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import { parse as parseYaml } from 'yaml';
import type { EnvironmentSpec, Limits } from '../../../protocol/build-spec.js';
import { detectExecutors } from '../detect.js';
import type { StepOutcome, StepRequest } from '../executor.js';
import { ensureGuestAssets, moduleDepends } from './assets.js';
import { MarkerScanner } from './guest-link.js';
import { hostTscKhz } from './qemu.js';
import { parseBase, VmExecutor } from './vm.js';
import type { VmSandbox } from './vm-sandbox.js';
import { whenSteady } from '../../../test/helpers/wait.js';

// Real QEMU (TCG on this machine). One cache dir for every run, so the kernel is downloaded
// and the initramfs built once; the owner is unique to this process.
const CACHE = join(tmpdir(), 'crowdbake-vm-test-cache');
const OWNER = `vmtest-${process.pid}`;
const BUSYBOX: EnvironmentSpec = { base: 'vm:busybox', setup: [] };
const REPO = join(import.meta.dirname, '../../../..');
const dirs: string[] = [];
let seq = 0;

function tempDir(prefix = 'crowdbake-vmtest-'): string {
  const d = mkdtempSync(join(tmpdir(), prefix));
  dirs.push(d);
  return d;
}

interface Ran extends StepOutcome { stdout: string; stderr: string; ms: number }

async function run(sandbox: VmSandbox, cmd: string | string[], extra: Partial<StepRequest> = {}): Promise<Ran> {
  const out = { stdout: '', stderr: '' };
  const started = Date.now();
  const outcome = await sandbox.run({
    run: cmd, env: {}, timeoutMs: 60_000, signal: new AbortController().signal,
    onOutput: (c, s) => { out[s] += c.toString(); }, ...extra,
  });
  return { ...outcome, ...out, ms: Date.now() - started };
}

function sha256(file: string): string {
  return createHash('sha256').update(readFileSync(file)).digest('hex');
}

function alive(pid: number | undefined): boolean {
  if (!pid) return false;
  try {
    process.kill(pid, 0);
    return !readFileSync(`/proc/${pid}/stat`, 'utf8').split(') ')[1]?.startsWith('Z');
  } catch {
    return false;
  }
}

after(() => { for (const d of dirs) rmSync(d, { recursive: true, force: true }); });

test('MarkerScanner finds a marker split across chunks and holds back only a possible start of it', () => {
  const got: string[] = [];
  const s = new MarkerScanner(Buffer.from('\x1ecb:abc\x1e'), (b) => got.push(b.toString()));
  assert.equal(s.push(Buffer.from('hello \x1e')), null);
  assert.deepEqual(got, ['hello ']);
  assert.equal(s.push(Buffer.from('x\x1e is not it, \x1ecb:a')), null);
  assert.deepEqual(got, ['hello ', '\x1ex\x1e is not it, ']);
  const rest = s.push(Buffer.from('bc\x1etail'));
  assert.equal(rest?.toString(), 'tail');
  assert.equal(got.join(''), 'hello \x1ex\x1e is not it, ');
});

// TarFilter's tests (hostile archives, fuzz) are in tar-filter.test.ts.

test('module dependencies, host TSC rate and bases are parsed', () => {
  assert.deepEqual(moduleDepends(Buffer.from('\0\0license=GPL\0depends=virtio,virtio-ring\0name=virtio_net\0')), ['virtio', 'virtio_ring']);
  assert.deepEqual(moduleDepends(Buffer.from('\0depends=\0')), []);
  assert.equal(hostTscKhz('processor : 0\ncpu MHz\t\t: 2445.406\n'), 2445406);
  assert.equal(hostTscKhz('no such line'), 2_000_000);
  assert.equal(parseBase('vm:busybox'), null);
  assert.deepEqual(parseBase('vm:deb.qcow2'), { file: { from: 'bases-dir', name: 'deb.qcow2' }, format: 'qcow2' });
  assert.deepEqual(parseBase('vm:deb.img'), { file: { from: 'bases-dir', name: 'deb.img' }, format: 'raw' });
  assert.throws(() => parseBase('image:debian:12'), /base "image:debian:12" is not supported by the vm executor/);
  assert.throws(() => parseBase('vm:/images/deb.qcow2'), /base "vm:\/images\/deb.qcow2" names a path on the worker/);
  assert.throws(() => parseBase('vm:deb.vdi'), /base "vm:deb.vdi": "deb.vdi" must end in .qcow2, .img, .raw/);
});

test('a kernel package apt does not know is named in the error', async () => {
  await assert.rejects(ensureGuestAssets({ cacheDir: tempDir(), metaPackage: 'crowdbake-no-such-kernel' }, () => {}),
    /guest kernel .*crowdbake-no-such-kernel/);
});

describe('vm executor with real QEMU', { concurrency: false, timeout: 600_000 }, () => {
  const executor = new VmExecutor({ ownerId: OWNER, cacheDir: CACHE });
  const progress: string[] = [];
  let main: VmSandbox;
  let mainWorkdir: string;
  const cold = !existsSync(join(CACHE, 'kernel'));

  before(async () => {
    const a = await executor.isAvailable();
    assert.ok(a.ok, a.ok ? '' : a.reason);
    await executor.cleanupStale();
    await executor.prepare(BUSYBOX, (l) => progress.push(l));
  }, { timeout: 600_000 });

  async function open(limits: Limits = {}, network = false, environment = BUSYBOX, ex = executor): Promise<{ sandbox: VmSandbox; workdir: string }> {
    const workdir = tempDir();
    const sandbox = await ex.open({ id: `vt${process.pid}-${++seq}`, workdir, environment, limits, network }) as VmSandbox;
    return { sandbox, workdir };
  }

  test('detectExecutors offers vm; prepare says whether KVM or TCG is used', async () => {
    assert.ok(progress.some((l) => /^vm: using (KVM|TCG)/.test(l)), progress.join('\n'));
    if (cold) {
      assert.ok(progress.some((l) => /^vm: downloading the guest kernel: Debian package linux-image-\S+ \S+/.test(l)), progress.join('\n'));
      assert.ok(progress.some((l) => /^vm: building the guest initramfs/.test(l)), progress.join('\n'));
    }
    const d = await detectExecutors(`${OWNER}-detect`, 'vm', { dataDir: tempDir() });
    assert.deepEqual(d.executors.map((e) => e.kind), ['vm']);
  });

  test('boots, streams output, passes env, returns exit codes; the workdir goes in and comes back', async (t) => {
    mainWorkdir = tempDir();
    writeFileSync(join(mainWorkdir, 'from-host.txt'), 'written by the host\n');
    cpSync(join(REPO, 'examples/hello'), mainWorkdir, { recursive: true });
    const started = Date.now();
    main = await executor.open({ id: `vt${process.pid}-main`, workdir: mainWorkdir, environment: BUSYBOX, limits: {}, network: false }) as VmSandbox;
    let first = 0;
    let out = '';
    const r0 = await run(main, 'echo booted', { onOutput: (c) => { first ||= Date.now(); out += c.toString(); } });
    assert.equal(r0.exitCode, 0);
    assert.equal(out, 'booted\n');
    t.diagnostic(`boot-to-first-command ${first - started} ms (${executor.describeAccel()})`);

    const r1 = await run(main, 'cat from-host.txt; echo "[$GREETING]"; echo oops >&2; echo from the step > made.txt; exit 3',
      { env: { GREETING: `it's "quoted"\nand $NOT expanded` } });
    assert.equal(r1.exitCode, 3);
    assert.equal(r1.stopped, null);
    assert.equal(r1.stdout, `written by the host\n[it's "quoted"\nand $NOT expanded]\n`);
    assert.equal(r1.stderr, 'oops\n');
    assert.equal(readFileSync(join(mainWorkdir, 'made.txt'), 'utf8'), 'from the step\n');

    const r2 = await run(main, ['printf', '%s|', 'a b', "c'd", '$HOME']);
    assert.equal(r2.stdout, "a b|c'd|$HOME|");
    assert.equal((await run(main, 'false')).exitCode, 1);
    assert.equal((await run(main, 'no-such-command')).exitCode, 127);
    const t0 = Date.now();
    assert.equal((await run(main, 'true')).exitCode, 0);
    t.diagnostic(`per-step overhead (a "true" step incl. copying /work out) ${Date.now() - t0} ms`);

    const net = await run(main, "ip -o link | cut -d: -f2 | tr -d ' '");
    assert.equal(net.stdout, 'lo\n', 'no network interface but lo');
    const bg = await run(main, '(sleep 1; echo leaked) & echo started');
    assert.equal(bg.stdout, 'started\n');
    const after = await run(main, 'sleep 1.5; echo second');
    assert.equal(after.stdout, 'second\n', "a step's leftover processes are killed when it ends");
    const rm = await run(main, 'rm made.txt; ls');
    assert.equal(rm.exitCode, 0);
    assert.equal(existsSync(join(mainWorkdir, 'made.txt')), false, 'a deletion in the VM reaches the host');
    assert.equal(existsSync(join(mainWorkdir, 'from-host.txt')), true);
  });

  test('examples/builders/hello-vm.yml builds and tests examples/hello; the artifact reaches the host', async () => {
    const builder = parseYaml(readFileSync(join(REPO, 'examples/builders/hello-vm.yml'), 'utf8')) as
      { requires: { executor: string }; environment: { base: string }; steps: { run: string }[]; artifacts: string[] };
    assert.equal(builder.requires.executor, 'vm');
    assert.equal(builder.environment.base, 'vm:busybox');
    const outputs: string[] = [];
    for (const step of builder.steps) {
      const r = await run(main, step.run);
      outputs.push(r.stdout + r.stderr);
      assert.equal(r.exitCode, 0, r.stdout + r.stderr);
    }
    assert.match(outputs.join(''), /test passed/);
    assert.deepEqual(builder.artifacts, ['dist/*.tar.gz']);
    const listing = execFileSync('tar', ['-tzf', join(mainWorkdir, 'dist/hello-1.0.tar.gz')]).toString();
    assert.match(listing, /hello-1\.0\/bin\/hello/);
  });

  test('freeze stops the guest and its step timer; thaw resumes both', async () => {
    let ticks = 0;
    // ≥2 s of guest time, ≤3 s even on a busy host; frozen 3.5 s: had the timer not paused,
    // the 5 s limit would hit.
    const step = main.run({
      run: 'for i in 1 2 3 4 5 6 7 8 9 10; do echo tick; sleep 0.2; done',
      env: {}, timeoutMs: 5000, signal: new AbortController().signal,
      onOutput: (c) => { ticks += (c.toString().match(/tick/g) ?? []).length; },
    });
    while (ticks < 2) await sleep(20);
    await main.freeze();
    // Output the guest had written before the freeze may still be on its way through QEMU.
    const frozenAt = await whenSteady('the frozen guest\'s output', async () => ticks);
    await sleep(3500);
    assert.equal(ticks, frozenAt, 'no output while frozen');
    await main.thaw();
    const r = await step;
    assert.equal(r.stopped, null, r.message ?? '');
    assert.equal(r.exitCode, 0);
    assert.equal(ticks, 10);
  });

  test('destroy leaves no qemu process, sockets, record or temp files, and is idempotent', async () => {
    const { pid, socketDir } = main.machine;
    assert.ok(alive(pid));
    assert.ok(existsSync(join(CACHE, 'running', `vt${process.pid}-main.json`)));
    await main.destroy();
    await main.destroy();
    assert.equal(alive(pid), false);
    assert.equal(existsSync(socketDir), false);
    assert.equal(existsSync(join(CACHE, 'running', `vt${process.pid}-main.json`)), false);
    assert.deepEqual(readdirSync(mainWorkdir).filter((f) => f.startsWith('.crowdbake')), []);
    assert.equal((await run(main, 'true')).stopped, 'error');
  });

  test('a step over its time limit is stopped and the VM killed', async () => {
    const { sandbox } = await open();
    const { pid } = sandbox.machine;
    const r = await run(sandbox, 'echo started; sleep 30', { timeoutMs: 2000 });
    assert.equal(r.stopped, 'timeout');
    assert.match(r.message ?? '', /time limit of 2s/);
    assert.equal(r.stdout, 'started\n');
    assert.ok(r.ms < 10_000, `took ${r.ms} ms`);
    assert.equal(alive(pid), false);
    const next = await run(sandbox, 'true');
    assert.equal(next.stopped, 'error');
    assert.match(next.message ?? '', /timed out/);
    await sandbox.destroy();
  });

  test('a memory hog is OOM-killed inside the guest and reported; network when asked; cancel', async () => {
    const { sandbox } = await open({ memoryBytes: 64 * 1024 ** 2 }, true);
    const hog = await run(sandbox, 'head -c 400000000 /dev/zero | sort | wc -c; echo survived');
    assert.equal(hog.stopped, 'memory', JSON.stringify(hog));
    assert.match(hog.message ?? '', /memory limit of 128 MiB/);
    assert.match(hog.stdout, /survived/);
    const net = await run(sandbox, 'ip -o addr show eth0');
    assert.match(net.stdout, /10\.0\.2\.15/);
    const ac = new AbortController();
    setTimeout(() => ac.abort(), 500);
    const c = await run(sandbox, 'sleep 30', { signal: ac.signal });
    assert.equal(c.stopped, 'cancelled');
    assert.ok(c.ms < 10_000);
    await sandbox.destroy();
  });

  test('cleanupStale kills the VMs an earlier instance with the same owner left running, and only those', async () => {
    const earlier = new VmExecutor({ ownerId: `${OWNER}-stale`, cacheDir: CACHE });
    const { sandbox } = await open({}, false, BUSYBOX, earlier);
    const { pid, socketDir } = sandbox.machine;
    assert.equal(await new VmExecutor({ ownerId: `${OWNER}-other`, cacheDir: CACHE }).cleanupStale(), 0);
    assert.ok(alive(pid));
    const later = new VmExecutor({ ownerId: `${OWNER}-stale`, cacheDir: CACHE });
    assert.equal(await later.cleanupStale(), 1);
    for (let i = 0; i < 50 && alive(pid); i++) await sleep(20);
    assert.equal(alive(pid), false);
    assert.equal(existsSync(socketDir), false);
    assert.equal(await later.cleanupStale(), 0);
    await sandbox.destroy();
  });

  test('a disk image base: steps run chrooted in it, writes go to a throwaway overlay', async (t) => {
    const mkfs = ['/usr/sbin/mkfs.ext4', '/sbin/mkfs.ext4'].find((p) => existsSync(p));
    if (!mkfs) return t.skip('mkfs.ext4 (e2fsprogs) is not installed');
    if (!['/usr/bin/qemu-img', '/usr/local/bin/qemu-img'].some((p) => existsSync(p))) return t.skip('qemu-img (qemu-utils) is not installed');
    const dir = tempDir();
    const root = join(dir, 'root');
    mkdirSync(join(root, 'bin'), { recursive: true });
    mkdirSync(join(root, 'etc'));
    execFileSync('cp', ['/bin/busybox', join(root, 'bin/busybox')]);
    for (const a of ['sh', 'cat', 'echo', 'env', 'ls', 'tar', 'chroot']) execFileSync('ln', ['-s', 'busybox', join(root, 'bin', a)]);
    writeFileSync(join(root, 'etc/marker'), 'inside the image\n');
    const raw = join(dir, 'disk.img');
    execFileSync(mkfs, ['-q', '-F', '-d', root, raw, '32M']);
    const basesDir = join(dir, 'bases');
    mkdirSync(basesDir);
    const qcow2 = join(basesDir, 'disk.qcow2');
    execFileSync('qemu-img', ['convert', '-O', 'qcow2', raw, qcow2]);
    const before = sha256(qcow2);
    const env = { base: 'vm:disk.qcow2', setup: [] };
    const withBases = new VmExecutor({ ownerId: OWNER, cacheDir: CACHE, basesDir });
    await withBases.prepare(env, () => {});
    const { sandbox, workdir } = await open({}, false, env, withBases);
    const r = await run(sandbox, 'cat /etc/marker; echo changed > /etc/marker; echo out > /work/result.txt');
    assert.equal(r.exitCode, 0, r.stderr);
    assert.equal(r.stdout, 'inside the image\n');
    assert.equal(readFileSync(join(workdir, 'result.txt'), 'utf8'), 'out\n');
    await sandbox.destroy();
    assert.equal(sha256(qcow2), before, 'the image is unchanged');
  });

  test('unsupported bases and setup steps are refused clearly', async () => {
    await assert.rejects(executor.prepare({ base: 'rootfs:/x.tar', setup: [] }, () => {}), /base "rootfs:\/x.tar" names a path on the worker/);
    await assert.rejects(executor.prepare({ base: 'rootfs:x.tar', setup: [] }, () => {}), /base "rootfs:x.tar" is not supported by the vm executor/);
    await assert.rejects(executor.prepare({ base: 'vm:/no/such.qcow2', setup: [] }, () => {}), /names a path on the worker/);
    await assert.rejects(executor.prepare({ base: 'vm:such.qcow2', setup: [] }, () => {}), /this worker has none \(crowdbake worker --bases-dir DIR\)/);
    await assert.rejects(executor.prepare({ base: 'vm:busybox', setup: ['apk add gcc'] }, () => {}), /setup steps are not supported yet/);
  });

  test('no VM of this run is left behind', async () => {
    assert.equal(await executor.cleanupStale(), 0);
    const left = readdirSync(join(CACHE, 'running')).filter((f) => f.startsWith(`vt${process.pid}-`));
    assert.deepEqual(left, []);
  });
});
