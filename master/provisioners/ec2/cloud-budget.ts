import type { Store } from '../../store/store.js';
import { log } from '../../log.js';

const HOUR_MS = 3_600_000;
const utcDay = (t: number) => new Date(t).toISOString().slice(0, 10);

export interface BudgetLimits {
  maxInstances?: number | undefined;
  hoursPerDay?: number | undefined;
  hoursPerMonth?: number | undefined;
}

/**
 * A cloud provisioner's instance-hours today and this month (UTC), persisted per day in the
 * store (`cloud_usage`), so a restarted master goes on counting where it stopped.
 */
export class CloudBudget {
  private day = '';
  private dayMs = 0;
  private monthMs = 0;
  private pending = 0;
  private pendingDay = '';
  private flushing: Promise<void> = Promise.resolve();

  constructor(private readonly store: Store, private readonly provisioner: string, private readonly limits: BudgetLimits, private readonly now = Date.now) {}

  async load(): Promise<void> {
    const t = this.now();
    const today = utcDay(t);
    const rows = await this.store.listCloudUsage(this.provisioner, `${today.slice(0, 7)}-01`);
    this.day = today;
    this.pendingDay = today;
    this.monthMs = rows.reduce((a, r) => a + r.instanceMs, 0) + this.pending;
    this.dayMs = (rows.find((r) => r.day === today)?.instanceMs ?? 0) + this.pending;
  }

  /** Counts instance time used just now. */
  add(ms: number): void {
    if (ms <= 0) return;
    this.rollOver();
    this.dayMs += ms;
    this.monthMs += ms;
    this.pending += ms;
  }

  private rollOver(): void {
    const today = utcDay(this.now());
    if (today === this.day) return;
    if (this.pending > 0) void this.flush();
    if (today.slice(0, 7) !== this.day.slice(0, 7)) this.monthMs = 0;
    this.day = today;
    this.pendingDay = today;
    this.dayMs = 0;
  }

  /** Writes the time counted since the last flush to today's row. */
  flush(): Promise<void> {
    const ms = this.pending;
    const day = this.pendingDay;
    this.pending = 0;
    if (ms <= 0) return this.flushing;
    this.flushing = this.flushing.then(() => this.store.addCloudUsage(this.provisioner, day, ms)).catch((e: Error) => {
      this.pending += ms;
      log.error(`cloud usage of ${this.provisioner} not stored yet: ${e.message}`);
    });
    return this.flushing;
  }

  /** Why no instance may start now (a cap is reached), or null. */
  blocked(live: number): string | null {
    this.rollOver();
    const l = this.limits;
    const h = (ms: number) => (ms / HOUR_MS).toFixed(2);
    if (l.hoursPerDay !== undefined && this.dayMs >= l.hoursPerDay * HOUR_MS) {
      return `the cloud budget of "${this.provisioner}" for today is spent (${h(this.dayMs)} of ${l.hoursPerDay} instance-hours, budget.hoursPerDay); no cloud worker starts before 00:00 UTC`;
    }
    if (l.hoursPerMonth !== undefined && this.monthMs >= l.hoursPerMonth * HOUR_MS) {
      return `the cloud budget of "${this.provisioner}" for this month is spent (${h(this.monthMs)} of ${l.hoursPerMonth} instance-hours, budget.hoursPerMonth); no cloud worker starts before the 1st, 00:00 UTC`;
    }
    if (l.maxInstances !== undefined && live >= l.maxInstances) {
      return `"${this.provisioner}" runs ${live} cloud instance(s), its budget.maxInstances`;
    }
    return null;
  }

  view(): { todayHours: number; monthHours: number } {
    this.rollOver();
    return { todayHours: this.dayMs / HOUR_MS, monthHours: this.monthMs / HOUR_MS };
  }
}
