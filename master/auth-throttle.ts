/**
 * Rate limit on failed authentication, per client address: after `maxFailures` failures
 * within `windowMs`, further attempts from that address are refused until the window has
 * passed — whether the next secret is right or not, so guessing gains nothing.
 *
 * With a name (the worker name a token is offered for, or "admin"), failures are counted per
 * address and name: a wrong token for one name from one address blocks only that address for
 * that name, so neither an attacker nor many workers behind one proxy lock out every other
 * worker and the admin. An address that fails for many names (5 × maxFailures) is blocked
 * for all, and a name that fails from many addresses (10 × maxFailures) is blocked for every
 * address except those that logged in as it recently: many addresses cannot brute force one
 * name, and the real worker (or admin) keeps its way in.
 */
export class AuthThrottle {
  private readonly failures = new Map<string, number[]>();
  /** `address\0name` → time of the last good login. */
  private readonly good = new Map<string, number>();

  constructor(private readonly maxFailures = 10, private readonly windowMs = 60_000) {}

  /** Milliseconds until this address may try again; 0 when it may try now. */
  blockedFor(address: string, now = Date.now()): number {
    return this.wait(`a\0${address}`, this.maxFailures, now);
  }

  fail(address: string, now = Date.now()): void {
    this.add(`a\0${address}`, now);
  }

  /** Milliseconds until `address` may try again for `name`, and why; 0 when it may try now. */
  blockedForName(address: string, name: string, now = Date.now()): { waitMs: number; why: string } {
    const pair = this.wait(`p\0${address}\0${name}`, this.maxFailures, now);
    if (pair > 0) return { waitMs: pair, why: `too many failed logins as "${name}" from ${address}` };
    const addr = this.wait(`a\0${address}`, this.maxFailures * 5, now);
    if (addr > 0) return { waitMs: addr, why: `too many failed logins from ${address}` };
    const lastGood = this.good.get(`${address}\0${name}`);
    const trusted = lastGood !== undefined && now - lastGood < 24 * 3600_000;
    const byName = trusted ? 0 : this.wait(`n\0${name}`, this.maxFailures * 10, now);
    if (byName > 0) return { waitMs: byName, why: `too many failed logins as "${name}" from many addresses` };
    return { waitMs: 0, why: '' };
  }

  failName(address: string, name: string, now = Date.now()): void {
    this.add(`p\0${address}\0${name}`, now);
    this.add(`a\0${address}`, now);
    this.add(`n\0${name}`, now);
  }

  /** A good login: this address keeps its way in as `name` while others guess it. */
  succeeded(address: string, name: string, now = Date.now()): void {
    this.good.set(`${address}\0${name}`, now);
    if (this.good.size > 10_000) {
      for (const [k, t] of this.good) if (now - t >= 24 * 3600_000) this.good.delete(k);
      while (this.good.size > 10_000) this.good.delete(this.good.keys().next().value!);
    }
  }

  private wait(key: string, max: number, now: number): number {
    const list = this.recent(key, now);
    return list.length >= max ? list[list.length - max]! + this.windowMs - now : 0;
  }

  private add(key: string, now: number): void {
    const list = this.recent(key, now);
    list.push(now);
    this.failures.set(key, list);
    if (this.failures.size > 10_000) this.prune(now);
  }

  private recent(key: string, now: number): number[] {
    return (this.failures.get(key) ?? []).filter((t) => now - t < this.windowMs);
  }

  private prune(now: number): void {
    for (const [a, list] of this.failures) if (!list.some((t) => now - t < this.windowMs)) this.failures.delete(a);
  }
}
