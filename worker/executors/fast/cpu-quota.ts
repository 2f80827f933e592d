import { existsSync } from 'node:fs';
import { readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { cgroupLines, CGROUP_ROOT } from './cgroups.js';

/** The CFS period the quota is written against (the kernel's default, 100 ms). */
const PERIOD_US = 100_000;

/**
 * A container's CPU quota through its cgroup ("keep going gently"): `cpu.max` on cgroup v2,
 * `cpu.cfs_quota_us` on v1. The quota podman set at start (the tighter of the builder's and
 * the volunteer's `cpus`) is read once and written back when the cap is lifted; a cap never
 * loosens it. Its CPU time counter (v2 `cpu.stat` usage_usec, v1 `cpuacct.usage`) tells how
 * much CPU the build really got.
 */
export class CpuQuota {
  private constructor(
    private readonly v: { version: 1; cpuDir: string; acctDir: string | null } | { version: 2; dir: string },
    /** Cores the container may use without a cap (null: no quota). */
    private readonly startCores: number | null,
  ) {}

  /** Null when the process's CPU cgroup cannot be found or written here. */
  static async ofPid(pid: number): Promise<CpuQuota | null> {
    const lines = await cgroupLines(pid);
    const v2 = lines.find((l) => l.controllers.length === 0);
    if (v2 && existsSync(join(CGROUP_ROOT, v2.path, 'cpu.max'))) {
      const dir = join(CGROUP_ROOT, v2.path);
      const [quota, period] = (await readFile(join(dir, 'cpu.max'), 'utf8')).trim().split(/\s+/);
      return new CpuQuota({ version: 2, dir }, quota === 'max' || !quota ? null : Number(quota) / Number(period || PERIOD_US));
    }
    const cpu = lines.find((l) => l.controllers.includes('cpu'));
    const acct = lines.find((l) => l.controllers.includes('cpuacct'));
    if (!cpu) return null;
    const mount = (l: { controllers: string[] }) => join(CGROUP_ROOT, l.controllers.join(','));
    const cpuDir = join(mount(cpu), cpu.path);
    if (!existsSync(join(cpuDir, 'cpu.cfs_quota_us'))) return null;
    const acctDir = acct ? join(mount(acct), acct.path) : null;
    const quota = Number((await readFile(join(cpuDir, 'cpu.cfs_quota_us'), 'utf8')).trim());
    const period = Number((await readFile(join(cpuDir, 'cpu.cfs_period_us'), 'utf8')).trim()) || PERIOD_US;
    return new CpuQuota({ version: 1, cpuDir, acctDir: acctDir && existsSync(join(acctDir, 'cpuacct.usage')) ? acctDir : null }, quota > 0 ? quota / period : null);
  }

  /** The directory whose quota is written (for messages and tests). */
  get dir(): string {
    return this.v.version === 2 ? this.v.dir : this.v.cpuDir;
  }

  /** Holds the container to `cpus` cores (never more than it started with); null restores its own quota. */
  async set(cpus: number | null): Promise<void> {
    const cores = cpus === null ? this.startCores : Math.min(cpus, this.startCores ?? Infinity);
    const quota = cores === null ? null : Math.max(1000, Math.round(cores * PERIOD_US));
    if (this.v.version === 2) {
      await writeFile(join(this.v.dir, 'cpu.max'), `${quota ?? 'max'} ${PERIOD_US}`);
    } else {
      await writeFile(join(this.v.cpuDir, 'cpu.cfs_period_us'), String(PERIOD_US));
      await writeFile(join(this.v.cpuDir, 'cpu.cfs_quota_us'), String(quota ?? -1));
    }
  }

  /** CPU time the container used so far, µs; null when no counter is readable. */
  async usageUsec(): Promise<number | null> {
    if (this.v.version === 2) {
      const m = /^usage_usec (\d+)$/m.exec(await readFile(join(this.v.dir, 'cpu.stat'), 'utf8').catch(() => ''));
      return m ? Number(m[1]) : null;
    }
    if (!this.v.acctDir) return null;
    const ns = Number((await readFile(join(this.v.acctDir, 'cpuacct.usage'), 'utf8').catch(() => '')).trim());
    return Number.isFinite(ns) && ns > 0 ? Math.round(ns / 1000) : null;
  }

  /** How often the kernel held the container back for its quota (`nr_throttled` in cpu.stat). */
  async throttledPeriods(): Promise<number | null> {
    const dir = this.v.version === 2 ? this.v.dir : this.v.cpuDir;
    const m = /^nr_throttled (\d+)$/m.exec(await readFile(join(dir, 'cpu.stat'), 'utf8').catch(() => ''));
    return m ? Number(m[1]) : null;
  }
}
