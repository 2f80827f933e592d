import { existsSync } from 'node:fs';
import { readFile } from 'node:fs/promises';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';

/**
 * The CPU time a build used, for the volunteer's credit ([crowd]). One reading per kind of
 * sandbox, each null where it cannot be known here (not Linux, no cgroup of its own, …), in
 * which case nothing is reported and the master counts no CPU time for the build:
 *
 * - containers: their cgroup's total, `cpu.stat` usage_usec (v2) or `cpuacct.usage` (v1),
 *   found from the container's init process. A cgroup shared with this worker itself (rootless
 *   podman without delegation puts containers in the caller's) is not the container's, and
 *   gives null.
 * - the host executor: the CPU time of the step's process tree, as the kernel adds it to this
 *   worker's children times (`/proc/self/stat` cutime + cstime) when the step is reaped.
 * - VMs: QEMU's own process time (every vCPU thread), `/proc/PID/stat` utime + stime.
 *
 * Nothing here acts on what a master sent: it reads this computer's own counters.
 */

const CGROUP_ROOT = '/sys/fs/cgroup';
/** /proc reports times in USER_HZ, 100 on every Linux this runs on. */
const TICK_MS = 10;

/** The fields of /proc/PID/stat after `comm` (which may hold spaces and parentheses). */
function statFields(text: string): string[] {
  return text.slice(text.lastIndexOf(')') + 2).trim().split(' ');
}

// After ")": 0 state, 1 ppid, … 11 utime, 12 stime, 13 cutime, 14 cstime (stat fields 14–17).
const UTIME = 11;

function ticks(fields: string[], from: number, count: number): number {
  let sum = 0;
  for (let i = from; i < from + count; i++) sum += Number(fields[i] ?? 0);
  return sum * TICK_MS;
}

/** CPU ms of the children this process has reaped so far (with their own reaped children); null off Linux. */
export function reapedChildrenCpuMs(): number | null {
  if (process.platform !== 'linux') return null;
  try {
    return ticks(statFields(readFileSync('/proc/self/stat', 'utf8')), UTIME + 2, 2);
  } catch {
    return null;
  }
}

/** CPU ms process `pid` has used itself (all its threads); null when it is gone or off Linux. */
export async function processCpuMs(pid: number | undefined): Promise<number | null> {
  if (process.platform !== 'linux' || !pid || !Number.isInteger(pid) || pid <= 0) return null;
  const text = await readFile(`/proc/${pid}/stat`, 'utf8').catch(() => null);
  return text === null ? null : ticks(statFields(text), UTIME, 2);
}

/** `controllers:path` lines of /proc/PID/cgroup. */
async function cgroupsOf(pid: number | 'self'): Promise<Map<string, string>> {
  const text = await readFile(`/proc/${pid}/cgroup`, 'utf8').catch(() => '');
  const out = new Map<string, string>();
  for (const line of text.split('\n')) {
    const m = /^\d+:([^:]*):(.*)$/.exec(line);
    if (!m || m[2]!.includes('..')) continue;
    out.set(m[1]!, m[2]!);
  }
  return out;
}

/**
 * CPU ms the cgroup of process `pid` (a container's init) has used; null when it cannot be
 * read, or when that cgroup is this worker's own.
 */
export async function cgroupCpuMs(pid: number | undefined): Promise<number | null> {
  if (process.platform !== 'linux' || !pid || !Number.isInteger(pid) || pid <= 0) return null;
  const [theirs, mine] = await Promise.all([cgroupsOf(pid), cgroupsOf('self')]);
  for (const [controllers, path] of theirs) {
    const list = controllers.split(',');
    if (!list.includes('cpuacct')) continue;
    if (mine.get(controllers) === path) return null;
    const file = join(CGROUP_ROOT, controllers, path, 'cpuacct.usage');
    const alt = join(CGROUP_ROOT, 'cpuacct', path, 'cpuacct.usage');
    const usage = await readFile(existsSync(file) ? file : alt, 'utf8').catch(() => null);
    if (usage !== null && /^\d+\s*$/.test(usage)) return Math.round(Number(usage) / 1e6);
  }
  const unified = theirs.get('');
  if (unified === undefined || mine.get('') === unified) return null;
  const stat = await readFile(join(CGROUP_ROOT, unified, 'cpu.stat'), 'utf8').catch(() => null);
  const usec = stat ? /^usage_usec (\d+)$/m.exec(stat)?.[1] : undefined;
  return usec === undefined ? null : Math.round(Number(usec) / 1000);
}

/** Sums the CPU time of a build's sandboxes; `known` once any of them could be measured. */
export class CpuTally {
  private ms = 0;
  private known = false;

  add(ms: number | null | undefined): void {
    if (ms === null || ms === undefined || !Number.isFinite(ms) || ms < 0) return;
    this.ms += ms;
    this.known = true;
  }

  /** `{ cpuMs }` for the `state finished` message, or nothing when no sandbox could say. */
  field(): { cpuMs?: number } {
    return this.known ? { cpuMs: Math.round(this.ms) } : {};
  }
}
