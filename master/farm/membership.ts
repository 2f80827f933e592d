import type { ClaimStore } from '../store/claims.js';

export interface MembershipOptions {
  leaseMs: number;
  /** This master's URL, recorded in its `masters` row. */
  url: () => string;
  /** The lease was lost (not renewed in time): drop everything held, before joining again. */
  onLost: (why: string) => void;
  /** Every renewal period, after the renewal (reaping, queue refresh). */
  onTick?: () => Promise<void>;
  log: (line: string) => void;
}

/**
 * This master's place in a farm of masters on one PostgreSQL: joins with a lease, renews it
 * every third of the lease, and when a renewal fails because the lease already ran out — or
 * no renewal has succeeded for a whole lease (the database unreachable) — steps down and
 * joins again under a new id. It never goes on as if it still held what it held.
 */
export class FarmMembership {
  private timer: NodeJS.Timeout | null = null;
  private lastRenewed = 0;
  private ticking = false;
  private closed = false;
  /** Times this master lost its lease (GET /readyz, /metrics). */
  losses = 0;
  held = false;

  constructor(private readonly claims: ClaimStore, private readonly opts: MembershipOptions) {}

  get holder(): string {
    return this.claims.holder;
  }

  async start(): Promise<void> {
    await this.claims.join(this.opts.url(), this.opts.leaseMs);
    this.lastRenewed = Date.now();
    this.held = true;
    this.timer = setInterval(() => void this.tick(), Math.max(50, Math.floor(this.opts.leaseMs / 3)));
    this.timer.unref();
  }

  private async tick(): Promise<void> {
    if (this.ticking || this.closed) return;
    this.ticking = true;
    try {
      let ok: boolean;
      try {
        ok = await this.claims.renew(this.opts.leaseMs);
        if (ok) this.lastRenewed = Date.now();
      } catch (e) {
        // Unreachable: the lease may still run in the database, but it cannot be known; after a
        // whole lease without a renewal it certainly does not.
        ok = Date.now() - this.lastRenewed < this.opts.leaseMs;
        if (ok) this.opts.log(`cannot renew this master's lease: ${(e as Error).message}`);
      }
      if (!ok) await this.lost();
      else await this.opts.onTick?.();
    } catch (e) {
      this.opts.log(`farm: ${(e as Error).message}`);
    } finally {
      this.ticking = false;
    }
  }

  private async lost(): Promise<void> {
    const old = this.claims.holder;
    this.held = false;
    this.losses++;
    this.opts.log(`lost this master's lease (${old}): letting go of its running builds and joining again`);
    this.opts.onLost(`master ${old} lost its lease`);
    await this.claims.join(this.opts.url(), this.opts.leaseMs);
    this.lastRenewed = Date.now();
    this.held = true;
    this.opts.log(`joined again as ${this.claims.holder}`);
  }

  /** Leaves the farm: the running attempts wait `windowMs` for their workers to reach another master. */
  async close(windowMs: number): Promise<void> {
    this.closed = true;
    if (this.timer) clearInterval(this.timer);
    await this.claims.leave(windowMs).catch((e: Error) => this.opts.log(`cannot leave the farm cleanly: ${e.message}`));
  }
}
