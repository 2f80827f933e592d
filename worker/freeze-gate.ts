import type { Freezable } from './executors/executor.js';

/**
 * Freezes and thaws one build: whichever sandbox (or running setup line) it has open now,
 * and any it opens while frozen. Frozen time is tracked for the local history.
 */
export class FreezeGate {
  private frozenAt: number | null = null;
  private frozenTotal = 0;
  private readonly sandboxes = new Set<Freezable>();
  private waiters: (() => void)[] = [];
  private op: Promise<void> = Promise.resolve();

  get frozen(): boolean {
    return this.frozenAt !== null;
  }

  get frozenMs(): number {
    return this.frozenTotal + (this.frozenAt !== null ? Date.now() - this.frozenAt : 0);
  }

  async attach(sandbox: Freezable): Promise<void> {
    this.sandboxes.add(sandbox);
    if (this.frozen) await sandbox.freeze();
  }

  detach(sandbox: Freezable): void {
    this.sandboxes.delete(sandbox);
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
    return (this.op = this.op.then(() => Promise.all([...this.sandboxes].map((s) => s.thaw()))).then(() => undefined));
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
