import { statfsSync } from 'node:fs';
import type { BuildPatch, Store } from './store/store.js';

/** Whether an error means the disk (or the database on it) is full. */
export function isDiskFull(e: unknown): boolean {
  const code = (e as { code?: unknown } | null)?.code;
  return code === 'ENOSPC' || code === 'EDQUOT' || code === 'SQLITE_FULL';
}

/**
 * Free space in the master's data directory. Below the reserve the master takes no new
 * build requests (507) and assigns no queued build, so that the store, logs and artifacts of
 * builds already running are not the ones to hit a full disk; `watch` says when space is back.
 */
export class DiskSpace {
  private checkedAt = 0;
  private last: string | null = null;
  private timer: NodeJS.Timeout | null = null;

  constructor(private readonly dir: string, private readonly reserveBytes = 1024 * 1024) {}

  /** Why the data directory cannot take more now, or null. Looked up at most every 250 ms. */
  problem(): string | null {
    const now = Date.now();
    if (now - this.checkedAt < 250) return this.last;
    this.checkedAt = now;
    try {
      const s = statfsSync(this.dir);
      const free = s.bavail * s.bsize;
      this.last = free < this.reserveBytes
        ? `the master's disk is full: ${this.dir} has ${Math.floor(free / 1024)} KiB free, less than the ${Math.floor(this.reserveBytes / 1024)} KiB it keeps in reserve; free some space`
        : null;
    } catch (e) {
      this.last = `cannot check the free space of ${this.dir}: ${(e as Error).message}`;
    }
    return this.last;
  }

  /** Reports a full disk found by a failed write, until the next look at the free space. */
  sawFull(e: Error): void {
    this.last = `the master's disk is full: ${e.message}; free some space in ${this.dir}`;
    this.checkedAt = Date.now();
  }

  /** Calls `recovered` each time space comes back after it ran out (checked every second). */
  watch(recovered: () => void): void {
    let full = this.problem() !== null;
    this.timer = setInterval(() => {
      const now = this.problem() !== null;
      if (full && !now) recovered();
      full = now;
    }, 1000);
    this.timer.unref();
  }

  close(): void {
    if (this.timer) clearInterval(this.timer);
  }
}

/**
 * Build-row changes that must reach the store even when it cannot take them now (disk
 * full): a failed change is kept, merged with later ones for the same build, and retried
 * every second until it is written. Other errors are thrown as before.
 */
export class BuildWrites {
  private readonly unsaved = new Map<number, BuildPatch>();
  private timer: NodeJS.Timeout | null = null;

  constructor(private readonly store: Pick<Store, 'updateBuild'>, private readonly log: (line: string) => void) {}

  async update(id: number, patch: BuildPatch): Promise<void> {
    const merged = { ...this.unsaved.get(id), ...patch };
    try {
      await this.store.updateBuild(id, merged);
      this.unsaved.delete(id);
    } catch (e) {
      if (!isDiskFull(e)) throw e;
      if (!this.unsaved.has(id)) this.log(`cannot store the state of build ${id} (${(e as Error).message}); retrying every second`);
      this.unsaved.set(id, merged);
      this.timer ??= setInterval(() => void this.retry(), 1000);
      this.timer.unref();
    }
  }

  private async retry(): Promise<void> {
    for (const [id, patch] of [...this.unsaved]) {
      try {
        await this.store.updateBuild(id, patch);
        if (this.unsaved.get(id) === patch) this.unsaved.delete(id);
        this.log(`stored the state of build ${id} after all`);
      } catch {
        return;
      }
    }
    if (this.unsaved.size === 0 && this.timer) { clearInterval(this.timer); this.timer = null; }
  }

  close(): void {
    if (this.timer) clearInterval(this.timer);
  }
}
