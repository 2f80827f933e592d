import type { Freezable } from './executors/executor.js';

/**
 * Freezes and thaws one build: whichever sandbox (or running setup line) it has open now,
 * and any it opens while frozen. Frozen time is tracked for the local history. It also holds
 * the build to a CPU cap ("keep going gently"): sandboxes that can take one (`limitCpu`) are
 * capped, the others are frozen while the cap lasts.
 */
export class FreezeGate {
  private frozenAt: number | null = null;
  private frozenTotal = 0;
  private readonly sandboxes = new Set<Freezable>();
  private waiters: (() => void)[] = [];
  private op: Promise<void> = Promise.resolve();
  /** The CPU cap now (cores), or null. */
  private cap: number | null = null;
  /** Sandboxes frozen because they cannot take the cap. */
  private readonly capFrozen = new Set<Freezable>();

  get cpuCap(): number | null {
    return this.cap;
  }

  get frozen(): boolean {
    return this.frozenAt !== null;
  }

  get frozenMs(): number {
    return this.frozenTotal + (this.frozenAt !== null ? Date.now() - this.frozenAt : 0);
  }

  async attach(sandbox: Freezable): Promise<void> {
    this.sandboxes.add(sandbox);
    if (this.frozen) await sandbox.freeze();
    else if (this.cap !== null) await this.capOne(sandbox, this.cap);
  }

  detach(sandbox: Freezable): void {
    this.sandboxes.delete(sandbox);
    this.capFrozen.delete(sandbox);
  }

  /** Holds every sandbox of the build to `cpus` cores, or lifts the cap (null). */
  limitCpu(cpus: number | null): Promise<void> {
    if (cpus === this.cap) return this.op;
    this.cap = cpus;
    return (this.op = this.op.then(() => Promise.all([...this.sandboxes].map((s) => this.capOne(s, cpus)))).then(() => undefined));
  }

  private async capOne(s: Freezable, cpus: number | null): Promise<void> {
    if (s.limitCpu) {
      await s.limitCpu(cpus);
      return;
    }
    // No CPU quota for this sandbox: a cap means frozen, as before "keep going gently" existed.
    if (cpus !== null && !this.capFrozen.has(s)) { this.capFrozen.add(s); if (!this.frozen) await s.freeze(); }
    if (cpus === null && this.capFrozen.delete(s) && !this.frozen) await s.thaw();
  }

  freeze(): Promise<void> {
    if (this.frozen) return this.op;
    this.frozenAt = Date.now();
    return (this.op = this.op.then(() => Promise.all([...this.sandboxes].map((s) => s.freeze()))).then(() => undefined));
  }

  thaw(): Promise<void> {
    if (this.frozenAt === null) return this.op;
    this.frozenTotal += Date.now() - this.frozenAt;
    this.frozenAt = null;
    for (const w of this.waiters.splice(0)) w();
    return (this.op = this.op.then(() => Promise.all([...this.sandboxes].filter((s) => !this.capFrozen.has(s)).map((s) => s.thaw()))).then(() => undefined));
  }

  /** Resolves at once when not frozen, else at the next thaw (or when the signal aborts). */
  waitThawed(signal: AbortSignal): Promise<void> {
    if (!this.frozen || signal.aborted) return Promise.resolve();
    return new Promise((ok) => {
      this.waiters.push(ok);
      signal.addEventListener('abort', () => ok(), { once: true });
    });
  }
}
