import { createHash } from 'node:crypto';
import { createReadStream, existsSync, readFileSync } from 'node:fs';
import { mkdir, open, readdir, readFile, rename, rm, stat, utimes, writeFile } from 'node:fs/promises';
import { delimiter, join } from 'node:path';
import { performance } from 'node:perf_hooks';
import { setTimeout as sleep } from 'node:timers/promises';
import { GuestVm, type LaunchOptions } from './guest-vm.js';
import { QEMU, qemuArgs, qemuVersion } from './qemu.js';

/**
 * Saved guests, one per machine shape: the VM boots once to the point where the agent is
 * parked (agent-script.ts: modules loaded, ports open, the disk probed but never mounted or
 * written), QEMU saves its whole state to a file, and every later build of that shape starts
 * a new QEMU that loads the file (`-incoming fd:3`) instead of booting. Each restore is its own
 * QEMU with its own throwaway overlay on the base (`snapshot=on`, as a cold boot), and gets its
 * build's settings (clock, RNG seed, pids limit) only after the restore (GuestVm.configure).
 *
 * Why the disk is consistent: when the state is saved the guest has read only the base's
 * partition table (the probe) and written nothing, and the key holds the base's content hash,
 * so whatever the guest's page cache holds of the disk is what a fresh overlay on that base
 * reads. The root filesystem is mounted after the restore, per build.
 *
 * The key is a sha256 of everything the saved state depends on: QEMU's version and binary,
 * the machine's command line (accel, memory, CPUs, devices, kernel command line — without the
 * per-VM paths and the TCG clock hint), the contents of the kernel, the initramfs (which holds
 * the agent) and the disk image, and the host CPU. A change to any of them names another file,
 * so a stale snapshot is never restored; old ones are pruned (KEEP).
 *
 * Files live in the worker's own cache dir (`<cacheDir>/snapshots`), never where a master names:
 *   KEY.vmstate   the state    KEY.json   its size and sha256, written last (the commit point)
 *   KEY.lock      held (O_EXCL, with the holder's pid) while one process creates KEY
 * A snapshot is checked against its record (size, and on first use in this process its sha256);
 * one that does not match, or that QEMU fails to load, is removed and the build boots cold,
 * saying why in the worker's log.
 */

const FORMAT = 'crowdbake-vm-snapshot-1';
/** Snapshots kept (each about the guest's used memory, tens of MiB); the least recently used go first. */
const KEEP = 8;
const LOCK_POLL_MS = 100;

export interface SnapshotRecord {
  key: string;
  size: number;
  sha256: string;
  createdAt: string;
  createMs: number;
}

export type LaunchedFrom = 'snapshot' | 'cold';

export class VmSnapshots {
  private readonly creating = new Map<string, Promise<boolean>>();
  private readonly hashes = new Map<string, { stamp: string; hash: Promise<string> }>();
  /** `ino:size:mtime` of snapshot files whose sha256 matched their record in this process. */
  private readonly verified = new Set<string>();
  private qemuId: Promise<string> | null = null;

  constructor(readonly dir: string, private readonly log: (line: string) => void) {}

  /**
   * A build's VM: restored from its machine shape's snapshot (created first when there is none),
   * else booted cold — when the snapshot cannot be made, is stale, corrupt or fails to load.
   */
  async launch(o: LaunchOptions): Promise<{ vm: GuestVm; from: LaunchedFrom }> {
    if (o.restoreFrom) throw new Error('launch() picks the saved state itself');
    let key: string;
    try {
      key = await this.key(o);
    } catch (e) {
      this.log(`vm: no snapshot (${(e as Error).message}); booting cold`);
      return { vm: await GuestVm.launch(o), from: 'cold' };
    }
    const file = this.statePath(key);
    let usable = await this.check(key);
    if (usable === 'missing') usable = await this.ensure(key, o) ? 'ok' : 'missing';
    if (usable === 'ok') {
      try {
        const vm = await GuestVm.launch({ ...o, restoreFrom: file });
        void this.touch(key);
        return { vm, from: 'snapshot' };
      } catch (e) {
        usable = `QEMU could not restore it: ${(e as Error).message}`;
      }
    }
    if (usable !== 'missing') {
      this.log(`vm: snapshot ${file} is unusable (${usable}); removed it, booting cold`);
      await this.remove(key);
    }
    return { vm: await GuestVm.launch(o), from: 'cold' };
  }

  /** The snapshot's key for this VM (exported for tests and the bench). */
  async key(o: Pick<LaunchOptions, 'accel' | 'memoryMiB' | 'cpus' | 'kernel' | 'initrd' | 'network' | 'disk'>): Promise<string> {
    const args = qemuArgs({
      id: 'snapshot', socketDir: '/', accel: o.accel, memoryMiB: o.memoryMiB, cpus: o.cpus, kernel: '/kernel', initrd: '/initrd',
      network: o.network, ...(o.disk ? { disk: { path: '/disk', format: o.disk.format } } : {}),
    }).map((a) => a.replace(/ tsc_early_khz=\d+/, '')); // the clock hint read from cpuinfo may wobble; the guest keeps the saved one
    const [qemu, kernel, initrd, disk] = await Promise.all([
      this.qemuId ??= qemuIdentity(),
      this.contentHash(o.kernel), this.contentHash(o.initrd), o.disk ? this.contentHash(o.disk.path) : Promise.resolve(null),
    ]);
    return createHash('sha256').update(JSON.stringify({ FORMAT, qemu, args, kernel, initrd, disk, cpu: hostCpu() })).digest('hex').slice(0, 32);
  }

  statePath(key: string): string {
    return join(this.dir, `${key}.vmstate`);
  }

  private recordPath(key: string): string {
    return join(this.dir, `${key}.json`);
  }

  /** 'ok', 'missing' (no record yet), or why the files on disk are not a whole snapshot of `key`. */
  private async check(key: string): Promise<'ok' | 'missing' | string> {
    let rec: SnapshotRecord;
    try {
      rec = JSON.parse(await readFile(this.recordPath(key), 'utf8')) as SnapshotRecord;
    } catch (e) {
      return (e as NodeJS.ErrnoException).code === 'ENOENT' ? 'missing' : 'its record is unreadable';
    }
    const st = await stat(this.statePath(key)).catch(() => null);
    if (!st) return 'its state file is missing';
    if (rec.key !== key || st.size !== rec.size) return `its state file has ${st.size} bytes, its record says ${rec.size}`;
    const stamp = `${st.ino}:${st.size}:${st.mtimeMs}`;
    if (!this.verified.has(stamp)) {
      if (await sha256File(this.statePath(key)) !== rec.sha256) return 'its state file does not match its sha256';
      this.verified.add(stamp);
    }
    return 'ok';
  }

  /** Makes the snapshot unless another build (of this or another process) is making it; true once it exists. */
  private ensure(key: string, o: LaunchOptions): Promise<boolean> {
    let p = this.creating.get(key);
    if (!p) {
      p = this.createLocked(key, o).finally(() => this.creating.delete(key));
      this.creating.set(key, p);
    }
    return p;
  }

  private async createLocked(key: string, o: LaunchOptions): Promise<boolean> {
    await mkdir(this.dir, { recursive: true, mode: 0o700 });
    const lock = join(this.dir, `${key}.lock`);
    const deadline = Date.now() + 10 * 60_000;
    for (;;) {
      try {
        const h = await open(lock, 'wx', 0o600);
        await h.writeFile(String(process.pid));
        await h.close();
        break;
      } catch (e) {
        if ((e as NodeJS.ErrnoException).code !== 'EEXIST') throw e;
      }
      const holder = Number(await readFile(lock, 'utf8').catch(() => ''));
      if (holder > 0 && !pidAlive(holder)) {
        await rm(lock, { force: true }); // its creator died; the temp file it left is pruned below
        continue;
      }
      if (Date.now() > deadline) return false;
      await sleep(LOCK_POLL_MS);
      if (await this.check(key) === 'ok') return true;
    }
    try {
      if (await this.check(key) === 'ok') return true; // made while we waited for the lock
      return await this.create(key, o);
    } finally {
      await rm(lock, { force: true });
    }
  }

  private async create(key: string, o: LaunchOptions): Promise<boolean> {
    const started = performance.now();
    const tmp = `${this.statePath(key)}.${process.pid}.tmp`;
    await rm(tmp, { force: true });
    let vm: GuestVm | null = null;
    try {
      vm = await GuestVm.launch({ ...o, id: `snap-${o.id}`, setup: null });
      await vm.saveState(tmp);
      await vm.shutdown();
      vm = null;
      const size = (await stat(tmp)).size;
      const createMs = Math.round(performance.now() - started);
      const rec: SnapshotRecord = { key, size, sha256: await sha256File(tmp), createdAt: new Date().toISOString(), createMs };
      await rename(tmp, this.statePath(key));
      const st = await stat(this.statePath(key));
      this.verified.add(`${st.ino}:${st.size}:${st.mtimeMs}`);
      const recTmp = `${this.recordPath(key)}.${process.pid}.tmp`;
      await writeFile(recTmp, `${JSON.stringify(rec)}\n`, { mode: 0o600 });
      await rename(recTmp, this.recordPath(key));
      this.log(`vm: saved a snapshot of the booted guest (${Math.round(size / 1024 ** 2)} MiB in ${createMs} ms): ${this.statePath(key)}`);
      await this.prune(key);
      return true;
    } catch (e) {
      this.log(`vm: could not save a snapshot of the booted guest (${(e as Error).message}); booting cold`);
      return false;
    } finally {
      await vm?.shutdown();
      await rm(tmp, { force: true });
    }
  }

  private async remove(key: string): Promise<void> {
    await rm(this.recordPath(key), { force: true }); // first: without it nothing reads the state
    await rm(this.statePath(key), { force: true });
  }

  private async touch(key: string): Promise<void> {
    const now = new Date();
    await utimes(this.recordPath(key), now, now).catch(() => {});
  }

  /** Keeps the KEEP most recently used snapshots; removes temp files of creators that are gone. */
  private async prune(keep: string): Promise<void> {
    const names = await readdir(this.dir).catch(() => [] as string[]);
    for (const n of names) {
      const m = /^[0-9a-f]+\.(?:vmstate|json)\.(\d+)\.tmp$/.exec(n);
      if (m && !pidAlive(Number(m[1]))) await rm(join(this.dir, n), { force: true });
    }
    const recs = await Promise.all(names.filter((n) => /^[0-9a-f]+\.json$/.test(n))
      .map(async (n) => ({ key: n.slice(0, -5), mtime: (await stat(join(this.dir, n)).catch(() => null))?.mtimeMs ?? 0 })));
    const old = recs.filter((r) => r.key !== keep).sort((a, b) => b.mtime - a.mtime).slice(KEEP - 1);
    for (const r of old) await this.remove(r.key);
  }

  /** sha256 of a file's content, computed again only when its inode, size or times change. */
  private async contentHash(path: string): Promise<string> {
    const st = await stat(path);
    const stamp = `${st.dev}:${st.ino}:${st.size}:${st.mtimeMs}:${st.ctimeMs}`;
    const known = this.hashes.get(path);
    if (known?.stamp === stamp) return known.hash;
    const hash = sha256File(path);
    this.hashes.set(path, { stamp, hash });
    hash.catch(() => this.hashes.delete(path));
    return hash;
  }
}

async function sha256File(path: string): Promise<string> {
  const h = createHash('sha256');
  for await (const c of createReadStream(path)) h.update(c as Buffer);
  return h.digest('hex');
}

/** QEMU's version line and its binary's sha256 (a rebuilt package of the same version changes the device code). */
async function qemuIdentity(): Promise<string> {
  const version = await qemuVersion();
  const bin = (process.env.PATH ?? '/usr/bin:/bin').split(delimiter).filter((d) => d.startsWith('/')).map((d) => join(d, QEMU)).find((p) => existsSync(p));
  return `${version} ${bin ? await sha256File(bin) : 'binary not found'}`;
}

/** The host CPU's model and flags: under KVM (-cpu host) a state saved on one CPU may not load on another. */
function hostCpu(): string {
  let text = '';
  try { text = readFileSync('/proc/cpuinfo', 'utf8'); } catch { /* not Linux */ }
  return createHash('sha256').update(`${/^model name\s*:.*$/m.exec(text)?.[0] ?? ''}\n${/^flags\s*:.*$/m.exec(text)?.[0] ?? ''}`).digest('hex');
}

function pidAlive(pid: number): boolean {
  if (!Number.isInteger(pid) || pid <= 0) return false;
  try {
    process.kill(pid, 0);
    return true;
  } catch (e) {
    return (e as NodeJS.ErrnoException).code === 'EPERM';
  }
}
