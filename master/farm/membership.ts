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
 * every third of the lease, and steps down — drops everything held, joins again under a new
 * id — when a renewal finds the lease already ran out, or when no renewal has succeeded for
 * two thirds of the lease (`giveUpMs`). It never goes on as if it still held what it held.
 *
 * The second case is a watchdog of its own, not a check after a renewal: cut off from the
 * database (a network partition), a renewal does not fail, it hangs — the store's one
 * connection waits on TCP retransmissions — and a master that waited for its answer would go
 * on holding its workers' sockets past its lease while another master reaped and re-ran
 * their builds. Stepping down before the lease can run out in the database (it was extended
 * at most `giveUpMs` + a third ago) closes those sockets while the attempts are still held,
 * so the workers reach another master and are adopted, not restarted. An answer to a renewal
 * sent before stepping down is ignored (`epoch`): it is about the old id.
 */
export class FarmMembership {
  private timer: NodeJS.Timeout | null = null;
  private watchdog: NodeJS.Timeout | null = null;
  private lastRenewed = 0;
  private ticking = false;
  private closed = false;
  /** Counts step-downs: a renewal's answer from before the last one is not acted on. */
  private epoch = 0;
  private rejoining: Promise<void> | null = null;
  /** Times this master lost its lease (GET /readyz, /metrics). */
  losses = 0;
  held = false;

  constructor(private readonly claims: ClaimStore, private readonly opts: MembershipOptions) {}

  get holder(): string {
    return this.claims.holder;
  }

  /** How long without a successful renewal before stepping down: two renewal periods. */
  get giveUpMs(): number {
    return Math.floor(this.opts.leaseMs * 2 / 3);
  }

  async start(): Promise<void> {
    await this.claims.join(this.opts.url(), this.opts.leaseMs);
    this.renewed();
    this.held = true;
    this.timer = setInterval(() => void this.tick(), Math.max(50, Math.floor(this.opts.leaseMs / 3)));
    this.timer.unref();
  }

  private renewed(): void {
    this.lastRenewed = Date.now();
    if (this.watchdog) clearTimeout(this.watchdog);
    this.watchdog = setTimeout(() => {
      if (this.closed) return;
      void this.lost(`no renewal of this master's lease for ${((Date.now() - this.lastRenewed) / 1000).toFixed(1)}s (the database unreachable)`);
    }, this.giveUpMs);
    this.watchdog.unref();
  }

  private async tick(): Promise<void> {
    if (this.ticking || this.closed || this.rejoining) return;
    this.ticking = true;
    const epoch = this.epoch;
    try {
      let ok: boolean;
      try {
        ok = await this.claims.renew(this.opts.leaseMs);
      } catch (e) {
        // Unreachable: the lease may still run in the database, but it cannot be known; the
        // watchdog steps down if no renewal succeeds in time.
        if (epoch === this.epoch) this.opts.log(`cannot renew this master's lease: ${(e as Error).message}`);
        return;
      }
      if (epoch !== this.epoch || this.closed) return;
      if (!ok) await this.lost('its lease ran out');
      else {
        this.renewed();
        await this.opts.onTick?.();
      }
    } catch (e) {
      this.opts.log(`farm: ${(e as Error).message}`);
    } finally {
      this.ticking = false;
    }
  }

  private lost(why: string): Promise<void> {
    if (this.rejoining) return this.rejoining;
    this.epoch++;
    if (this.watchdog) clearTimeout(this.watchdog);
    const old = this.claims.holder;
    this.held = false;
    this.losses++;
    this.opts.log(`lost this master's lease (${old}: ${why}): letting go of its running builds and joining again`);
    this.opts.onLost(`master ${old} lost its lease`);
    this.rejoining = (async () => {
      while (!this.closed) {
        try {
          await this.claims.join(this.opts.url(), this.opts.leaseMs);
          this.renewed();
          this.held = true;
          this.opts.log(`joined again as ${this.claims.holder}`);
          return;
        } catch (e) {
          const retryMs = Math.max(50, Math.floor(this.opts.leaseMs / 3));
          this.opts.log(`cannot join the farm again (${(e as Error).message}); trying again in ${(retryMs / 1000).toFixed(1)}s`);
          await new Promise((ok) => setTimeout(ok, retryMs).unref());
        }
      }
    })().finally(() => { this.rejoining = null; });
    return this.rejoining;
  }

  /** Leaves the farm: the running attempts wait `windowMs` for their workers to reach another master. */
  async close(windowMs: number): Promise<void> {
    this.closed = true;
    if (this.timer) clearInterval(this.timer);
    if (this.watchdog) clearTimeout(this.watchdog);
    await this.claims.leave(windowMs).catch((e: Error) => this.opts.log(`cannot leave the farm cleanly: ${e.message}`));
  }
}
