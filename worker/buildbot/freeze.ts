import type { Sandbox, StepOutcome } from '../executors/executor.js';

/**
 * Freezing for the BuildBot worker. A `Freezer` stands for everything the worker runs: attach
 * it to the agent's FreezeGate (worker/freeze-gate.ts) like a sandbox, and freeze() stops every
 * running command (host process groups get SIGSTOP, containers are paused) and pauses their
 * timers; commands that would start while frozen wait for thaw().
 */

export interface Freezable {
  freeze(): Promise<void>;
  thaw(): Promise<void>;
}

export class Freezer implements Sandbox {
  private readonly items = new Set<Freezable>();
  private waiters: (() => void)[] = [];
  frozen = false;

  /** Registers something running; frozen at once if we are. Returns its removal. */
  add(item: Freezable): () => void {
    this.items.add(item);
    if (this.frozen) void item.freeze().catch(() => {});
    return () => { this.items.delete(item); };
  }

  async freeze(): Promise<void> {
    if (this.frozen) return;
    this.frozen = true;
    await Promise.all([...this.items].map((i) => i.freeze()));
  }

  async thaw(): Promise<void> {
    if (!this.frozen) return;
    this.frozen = false;
    for (const w of this.waiters.splice(0)) w();
    await Promise.all([...this.items].map((i) => i.thaw()));
  }

  /** Resolves at once when not frozen, else at the next thaw. */
  waitThawed(): Promise<void> {
    return this.frozen ? new Promise((ok) => this.waiters.push(ok)) : Promise.resolve();
  }

  async run(): Promise<StepOutcome> {
    return { exitCode: null, stopped: 'error', message: 'the BuildBot worker runs its own commands' };
  }

  async destroy(): Promise<void> {
    await this.thaw();
  }
}

/** A one-shot timer that can be reset and paused (frozen time does not count). */
export class PausableTimer implements Freezable {
  private handle: NodeJS.Timeout | undefined;
  private startedAt = 0;
  private remaining: number;
  private paused = false;
  private done = false;

  constructor(private readonly ms: number, private readonly onExpire: () => void) {
    this.remaining = ms;
    this.arm();
  }

  /** Starts counting the full time again (output arrived). */
  reset(): void {
    if (this.done) return;
    this.remaining = this.ms;
    if (!this.paused) this.arm();
  }

  cancel(): void {
    this.done = true;
    clearTimeout(this.handle);
  }

  async freeze(): Promise<void> {
    if (this.done || this.paused) return;
    this.paused = true;
    clearTimeout(this.handle);
    this.remaining -= Date.now() - this.startedAt;
  }

  async thaw(): Promise<void> {
    if (this.done || !this.paused) return;
    this.paused = false;
    this.arm();
  }

  private arm(): void {
    clearTimeout(this.handle);
    this.startedAt = Date.now();
    this.handle = setTimeout(() => { this.done = true; this.onExpire(); }, Math.max(0, Math.min(this.remaining, 2 ** 31 - 1)));
  }
}
