import type { Singleton } from '../../protocol/farm.js';
import type { ClaimStore } from '../store/claims.js';

export interface SingletonJob {
  start(): void;
  stop(): void;
}

/**
 * A job that runs on exactly one master at a time (repository polling, latent workers,
 * retention), elected by the lease `name` in the store. `tick()` (every third of the lease)
 * takes or renews it: taken, the job starts; refused (another master holds it), the job
 * stops. A renewal that cannot reach the store for half a lease steps down too, before the
 * lease can run out and pass to another master — so two never run it at once. Without a
 * ClaimStore (one master, SQLite) the job simply runs.
 */
export class SingletonLease {
  private running = false;
  private lastRenewed = 0;
  /** Times this master took the lease (metrics). */
  changes = 0;

  constructor(
    private readonly claims: ClaimStore | undefined,
    readonly name: Singleton,
    private readonly leaseMs: number,
    private readonly job: SingletonJob,
    private readonly log: (line: string) => void,
  ) {}

  get held(): boolean {
    return this.running;
  }

  async tick(): Promise<void> {
    if (!this.claims) {
      this.set(true);
      return;
    }
    try {
      const ok = await this.claims.lease(this.name, this.leaseMs);
      if (ok) this.lastRenewed = Date.now();
      this.set(ok);
    } catch (e) {
      if (this.running && Date.now() - this.lastRenewed >= this.leaseMs / 2) {
        this.log(`${this.name}: cannot renew its lease (${(e as Error).message}); stepping down`);
        this.set(false);
      }
    }
  }

  /** Stops the job; with `release`, gives the lease up for another master to take at once. */
  async close(release: boolean): Promise<void> {
    this.set(false);
    if (release) await this.claims?.unlease(this.name).catch(() => undefined);
  }

  private set(held: boolean): void {
    if (held === this.running) return;
    this.running = held;
    if (held) {
      this.changes++;
      if (this.claims) this.log(`${this.name}: this master holds the lease and runs it`);
      this.job.start();
    } else {
      if (this.claims) this.log(`${this.name}: another master holds the lease; stopped here`);
      this.job.stop();
    }
  }
}
