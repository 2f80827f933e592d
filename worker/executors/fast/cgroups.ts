import { existsSync } from 'node:fs';
import { readdir, readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { setImmediate as immediate, setTimeout as sleep } from 'node:timers/promises';

/**
 * Freezing, thawing and killing a container through its cgroups, without podman: a write to
 * `freezer.state` (v1) or `cgroup.freeze` (v2) stops every process of the container in a few
 * milliseconds, where `podman pause` takes tens.
 */

export const CGROUP_ROOT = '/sys/fs/cgroup';
const FREEZE_TIMEOUT_MS = 5000;
const KILL_TIMEOUT_MS = 5000;

type Freezer = { version: 1; dir: string } | { version: 2; dir: string };

export interface CgroupLine { controllers: string[]; path: string }

/** The lines of /proc/PID/cgroup (none for a bad pid or one that is gone; `..` in a path is refused). */
export async function cgroupLines(pid: number): Promise<CgroupLine[]> {
  if (!Number.isInteger(pid) || pid <= 0) return [];
  const text = await readFile(`/proc/${pid}/cgroup`, 'utf8').catch(() => '');
  const out: CgroupLine[] = [];
  for (const line of text.split('\n')) {
    const [, controllers, path] = /^\d+:([^:]*):(.*)$/.exec(line) ?? [];
    if (controllers === undefined || path === undefined || path.includes('..')) continue;
    out.push({ controllers: controllers === '' ? [] : controllers.split(','), path });
  }
  return out;
}

/**
 * The host file counting OOM kills in the container's memory cgroup (v1: memory.oom_control,
 * v2: memory.events, both have an `oom_kill N` line), or null when it cannot be found.
 * `podman inspect`'s OOMKilled only covers the container's main process, not an exec'd step.
 */
export async function oomCounterFile(pid: number): Promise<string | null> {
  for (const { controllers, path } of await cgroupLines(pid)) {
    const file = controllers.length === 0 ? `${CGROUP_ROOT}${path}/memory.events`
      : controllers.includes('memory') ? `${CGROUP_ROOT}/memory${path}/memory.oom_control` : null;
    if (file && existsSync(file)) return file;
  }
  return null;
}

/** The container's cgroups, found from one of its processes (its init, seen from the host). */
export class ContainerCgroup {
  private constructor(private readonly freezer: Freezer) {}

  /** Null when the process is gone or its cgroups cannot be found or controlled here. */
  static async ofPid(pid: number): Promise<ContainerCgroup | null> {
    const lines = await cgroupLines(pid);
    const v1 = lines.find((l) => l.controllers.includes('freezer'));
    const v2 = lines.find((l) => l.controllers.length === 0);
    if (v1 && existsSync(join(CGROUP_ROOT, 'freezer', v1.path, 'freezer.state'))) {
      return new ContainerCgroup({ version: 1, dir: join(CGROUP_ROOT, 'freezer', v1.path) });
    }
    if (v2 && existsSync(join(CGROUP_ROOT, v2.path, 'cgroup.freeze'))) {
      return new ContainerCgroup({ version: 2, dir: join(CGROUP_ROOT, v2.path) });
    }
    return null;
  }

  /** The cgroup directory whose freezer is used (for messages and tests). */
  get dir(): string {
    return this.freezer.dir;
  }

  /** Stops every process of the container; resolves once the kernel says they all are. */
  async freeze(): Promise<void> {
    const f = this.freezer;
    if (f.version === 1) {
      await this.waitState(() => writeFile(join(f.dir, 'freezer.state'), 'FROZEN'), () => readV1(f.dir), 'FROZEN');
    } else {
      await this.waitState(() => writeFile(join(f.dir, 'cgroup.freeze'), '1'), () => readV2(f.dir), 'frozen');
    }
  }

  async thaw(): Promise<void> {
    const f = this.freezer;
    if (f.version === 1) {
      await this.waitState(() => writeFile(join(f.dir, 'freezer.state'), 'THAWED'), () => readV1(f.dir), 'THAWED');
    } else {
      await this.waitState(() => writeFile(join(f.dir, 'cgroup.freeze'), '0'), () => readV2(f.dir), 'thawed');
    }
  }

  /** True while frozen (or freezing). */
  async frozen(): Promise<boolean> {
    const f = this.freezer;
    const state = f.version === 1 ? await readV1(f.dir) : await readV2(f.dir);
    return state !== 'THAWED' && state !== 'thawed';
  }

  /**
   * SIGKILLs every process of the container, also when frozen, and resolves once the cgroup is
   * empty: frozen so nothing can fork meanwhile (or `cgroup.kill` on v2), then thawed so the
   * signals are delivered. With `waitGone` false it resolves once every process has its SIGKILL
   * (none can run its own code again; a warm sandbox's destroy, warm-pool.ts), not once they exited.
   */
  async killAll(waitGone = true): Promise<void> {
    const f = this.freezer;
    // Gone: the container stopped and was cleaned up, nothing is left to kill.
    if (!existsSync(f.dir)) return;
    if (f.version === 2 && existsSync(join(f.dir, 'cgroup.kill'))) {
      await writeFile(join(f.dir, 'cgroup.kill'), '1');
    } else {
      await this.freeze().catch(() => {});
      for (const pid of await listProcs(f.dir)) {
        try { process.kill(pid, 'SIGKILL'); } catch { /* already gone */ }
      }
      await this.thaw().catch((e: unknown) => { if (existsSync(f.dir)) throw e; });
    }
    if (!waitGone) return;
    const deadline = Date.now() + KILL_TIMEOUT_MS;
    for (let pids = await listProcs(this.freezer.dir); pids.length > 0; pids = await listProcs(this.freezer.dir)) {
      if (Date.now() > deadline) throw new Error(`${pids.length} process(es) of the container survived SIGKILL`);
      for (const pid of pids) {
        try { process.kill(pid, 'SIGKILL'); } catch { /* already gone */ }
      }
      await sleep(2);
    }
  }

  private async waitState(write: () => Promise<void>, read: () => Promise<string>, want: string): Promise<void> {
    await write();
    const deadline = Date.now() + FREEZE_TIMEOUT_MS;
    for (let tries = 1; ; tries++) {
      const state = await read();
      if (state === want) return;
      if (state === 'gone') throw new Error('the container\'s cgroup is gone');
      if (Date.now() > deadline) {
        if (want !== 'THAWED' && want !== 'thawed') await this.thaw().catch(() => {});
        throw new Error(`the container's cgroup did not become ${want.toLowerCase()} within ${FREEZE_TIMEOUT_MS} ms (it is ${state.toLowerCase()})`);
      }
      // v1 may stay FREEZING while a task is in an uninterruptible sleep: asking again retries.
      if (tries % 20 === 0) await write();
      await (tries < 10 ? immediate() : sleep(1));
    }
  }
}

async function readV1(dir: string): Promise<string> {
  return (await readFile(join(dir, 'freezer.state'), 'utf8').catch(() => 'gone')).trim();
}

async function readV2(dir: string): Promise<string> {
  const text = await readFile(join(dir, 'cgroup.events'), 'utf8').catch(() => null);
  if (text === null) return 'gone';
  return /^frozen 1$/m.test(text) ? 'frozen' : 'thawed';
}

/** Pids in the cgroup and any cgroups below it. */
async function listProcs(dir: string): Promise<number[]> {
  const text = await readFile(join(dir, 'cgroup.procs'), 'utf8').catch(() => '');
  const pids = text.split('\n').map(Number).filter((n) => Number.isInteger(n) && n > 0);
  const entries = await readdir(dir, { withFileTypes: true }).catch(() => []);
  for (const e of entries) if (e.isDirectory()) pids.push(...await listProcs(join(dir, e.name)));
  return pids;
}
