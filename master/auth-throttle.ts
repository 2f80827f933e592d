/**
 * Rate limit on failed authentication, per client address: after `maxFailures` failures
 * within `windowMs`, further attempts from that address are refused until the window has
 * passed — whether the next secret is right or not, so guessing gains nothing.
 */
export class AuthThrottle {
  private readonly failures = new Map<string, number[]>();

  constructor(private readonly maxFailures = 10, private readonly windowMs = 60_000) {}

  /** Milliseconds until this address may try again; 0 when it may try now. */
  blockedFor(address: string, now = Date.now()): number {
    const list = this.recent(address, now);
    return list.length >= this.maxFailures ? list[0]! + this.windowMs - now : 0;
  }

  fail(address: string, now = Date.now()): void {
    const list = this.recent(address, now);
    list.push(now);
    this.failures.set(address, list);
    if (this.failures.size > 10_000) this.prune(now);
  }

  private recent(address: string, now: number): number[] {
    return (this.failures.get(address) ?? []).filter((t) => now - t < this.windowMs);
  }

  private prune(now: number): void {
    for (const [a, list] of this.failures) if (!list.some((t) => now - t < this.windowMs)) this.failures.delete(a);
  }
}
