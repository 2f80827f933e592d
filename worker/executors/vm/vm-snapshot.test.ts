import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, symlinkSync, truncateSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, test } from 'node:test';
import type { EnvironmentSpec } from '../../../protocol/build-spec.js';
import { VmExecutor } from './vm.js';
import type { VmSandbox } from './vm-sandbox.js';
import type { SnapshotRecord } from './vm-snapshot.js';

// Real QEMU (TCG here). Each executor gets its own cache dir (so its snapshots are its own);
// the guest kernel is shared with vm.test.ts through a symlink, so it is downloaded once.
const SHARED = join(tmpdir(), 'crowdbake-vm-test-cache');
const OWNER = `vmsnaptest-${process.pid}`;
const BUSYBOX: EnvironmentSpec = { base: 'vm:busybox', setup: [] };
const dirs: string[] = [];
let seq = 0;

function tempDir(prefix = 'crowdbake-vmsnap-'): string {
  const d = mkdtempSync(join(tmpdir(), prefix));
  dirs.push(d);
  return d;
}

after(() => { for (const d of dirs) rmSync(d, { recursive: true, force: true }); });

function executor(basesDir?: string): { ex: VmExecutor; log: string[]; snapshots: string } {
  const cacheDir = tempDir();
  mkdirSync(join(SHARED, 'kernel'), { recursive: true });
  symlinkSync(join(SHARED, 'kernel'), join(cacheDir, 'kernel'));
  const log: string[] = [];
  const ex = new VmExecutor({ ownerId: OWNER, cacheDir, snapshots: true, log: (l) => log.push(l), ...(basesDir ? { basesDir } : {}) });
  return { ex, log, snapshots: join(cacheDir, 'snapshots') };
}

async function open(ex: VmExecutor, environment = BUSYBOX): Promise<{ sandbox: VmSandbox; workdir: string; from: string | undefined }> {
  const workdir = tempDir();
  const id = `vs${process.pid}-${++seq}`;
  const sandbox = await ex.open({ id, workdir, environment, limits: {}, network: false }) as VmSandbox;
  return { sandbox, workdir, from: ex.launchedFrom.get(id) };
}

async function sh(sandbox: VmSandbox, cmd: string): Promise<string> {
  let out = '';
  const r = await sandbox.run({ run: cmd, env: {}, timeoutMs: 60_000, signal: new AbortController().signal, onOutput: (c) => { out += c.toString(); } });
  assert.equal(r.exitCode, 0, `${cmd}: ${r.message ?? ''} ${out}`);
  return out;
}

const saved = (log: string[]): number => log.filter((l) => /^vm: saved a snapshot of the booted guest/.test(l)).length;
const states = (dir: string): string[] => readdirSync(dir).filter((f) => f.endsWith('.vmstate')).sort();

describe('VM snapshots with real QEMU', { concurrency: false, timeout: 900_000 }, () => {
  test('concurrent first builds make the snapshot once; both run restored from it, with their own files and random bytes', async () => {
    const { ex, log, snapshots } = executor();
    await ex.prepare(BUSYBOX, () => {});
    const [a, b] = await Promise.all([open(ex), open(ex)]);
    assert.equal(saved(log), 1, log.join('\n'));
    assert.equal(a.from, 'snapshot');
    assert.equal(b.from, 'snapshot');
    assert.deepEqual(readdirSync(snapshots).filter((f) => !/^[0-9a-f]+\.(vmstate|json)$/.test(f)), [], 'no lock or temp file is left');
    assert.equal(states(snapshots).length, 1);

    await sh(a.sandbox, 'echo a > /tmp/left-by-a; echo a > /root/left-by-a; echo a > /work/mine');
    const randA = await sh(a.sandbox, 'head -c 16 /dev/urandom | od -An -tx1');
    const randB = await sh(b.sandbox, 'head -c 16 /dev/urandom | od -An -tx1');
    assert.notEqual(randA, randB, 'two guests restored from one snapshot read different random bytes');
    assert.equal(await sh(b.sandbox, 'ls /tmp /root /work'), '/root:\n\n/tmp:\n\n/work:\n');
    assert.equal(readFileSync(join(a.workdir, 'mine'), 'utf8'), 'a\n');
    assert.equal(existsSync(join(b.workdir, 'mine')), false);
    await a.sandbox.destroy();
    await b.sandbox.destroy();

    const c = await open(ex);
    assert.equal(c.from, 'snapshot');
    assert.equal(await sh(c.sandbox, 'ls /tmp /root /work; echo up'), '/root:\n\n/tmp:\n\n/work:\nup\n', 'a later build sees nothing of an earlier one');
    await c.sandbox.destroy();
    assert.equal(saved(log), 1);
  });

  test('a disk base: every restore gets a fresh overlay on the base; changing the base makes a new snapshot', async (t) => {
    const mkfs = ['/usr/sbin/mkfs.ext4', '/sbin/mkfs.ext4'].find((p) => existsSync(p));
    if (!mkfs) return t.skip('mkfs.ext4 (e2fsprogs) is not installed');
    const dir = tempDir();
    const basesDir = join(dir, 'bases');
    mkdirSync(basesDir);
    const makeImage = (marker: string): string => {
      const root = join(dir, 'root');
      rmSync(root, { recursive: true, force: true });
      mkdirSync(join(root, 'bin'), { recursive: true });
      mkdirSync(join(root, 'etc'));
      execFileSync('cp', ['/bin/busybox', join(root, 'bin/busybox')]);
      for (const a of ['sh', 'cat', 'echo', 'env', 'ls', 'tar', 'chroot', 'rm']) execFileSync('ln', ['-s', 'busybox', join(root, 'bin', a)]);
      writeFileSync(join(root, 'etc/marker'), marker);
      const raw = join(dir, 'disk.img');
      rmSync(raw, { force: true });
      execFileSync(mkfs, ['-q', '-F', '-d', root, raw, '32M']);
      const qcow2 = join(basesDir, 'disk.qcow2');
      execFileSync('qemu-img', ['convert', '-O', 'qcow2', raw, `${qcow2}.new`]);
      execFileSync('mv', [`${qcow2}.new`, qcow2]);
      return createHash('sha256').update(readFileSync(qcow2)).digest('hex');
    };
    const before = makeImage('first image\n');
    const { ex, log, snapshots } = executor(basesDir);
    const env = { base: 'vm:disk.qcow2', setup: [] };
    await ex.prepare(env, () => {});

    const a = await open(ex, env);
    assert.equal(a.from, 'snapshot');
    assert.equal(await sh(a.sandbox, 'cat /etc/marker; echo changed > /etc/marker; echo new > /etc/added; rm /bin/ls'), 'first image\n');
    await a.sandbox.destroy();
    const b = await open(ex, env);
    assert.equal(b.from, 'snapshot');
    assert.equal(await sh(b.sandbox, 'cat /etc/marker /etc/*; [ -e /bin/ls ] && echo ls is there'), 'first image\nfirst image\nls is there\n',
      "the second build from the snapshot sees the base, not the first build's writes");
    await b.sandbox.destroy();
    assert.equal(createHash('sha256').update(readFileSync(join(basesDir, 'disk.qcow2'))).digest('hex'), before, 'the base is unchanged');
    assert.equal(saved(log), 1);
    const first = states(snapshots);

    makeImage('second image\n');
    const c = await open(ex, env);
    assert.equal(c.from, 'snapshot');
    assert.equal(await sh(c.sandbox, 'cat /etc/marker'), 'second image\n');
    await c.sandbox.destroy();
    assert.equal(saved(log), 2, 'a changed base is a new snapshot');
    assert.equal(states(snapshots).length, 2);
    assert.ok(states(snapshots).some((f) => !first.includes(f)));
  });

  test('a truncated snapshot, or one QEMU cannot load, is removed and the build boots cold; the next build makes it again', async () => {
    const { ex, log, snapshots } = executor();
    await ex.prepare(BUSYBOX, () => {});
    await (await open(ex)).sandbox.destroy();
    const [state] = states(snapshots);
    assert.ok(state);
    const file = join(snapshots, state);
    const record = file.replace(/\.vmstate$/, '.json');

    truncateSync(file, 4096);
    const cold = await open(ex);
    assert.equal(cold.from, 'cold');
    assert.equal(await sh(cold.sandbox, 'echo cold'), 'cold\n');
    await cold.sandbox.destroy();
    assert.ok(log.some((l) => l.startsWith(`vm: snapshot ${file} is unusable (its state file has 4096 bytes, its record says`) && l.endsWith('removed it, booting cold')), log.join('\n'));
    assert.equal(existsSync(file), false);
    assert.equal(existsSync(record), false);

    const again = await open(ex);
    assert.equal(again.from, 'snapshot');
    await again.sandbox.destroy();
    assert.equal(saved(log), 2);

    // A record that matches a state QEMU cannot load (as after a QEMU change the key missed).
    truncateSync(file, 1024 * 1024);
    const rec = JSON.parse(readFileSync(record, 'utf8')) as SnapshotRecord;
    writeFileSync(record, JSON.stringify({ ...rec, size: 1024 * 1024, sha256: createHash('sha256').update(readFileSync(file)).digest('hex') }));
    const refused = await open(ex);
    assert.equal(refused.from, 'cold');
    assert.equal(await sh(refused.sandbox, 'echo cold again'), 'cold again\n');
    await refused.sandbox.destroy();
    assert.ok(log.some((l) => l.startsWith(`vm: snapshot ${file} is unusable (QEMU could not restore it: `)), log.join('\n'));
    assert.equal(existsSync(file), false);
    assert.equal(await ex.cleanupStale(), 0, 'no VM is left behind');
  });
});
