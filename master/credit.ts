import type { BuildRow, CapacityRow, CreditCounts, Store } from './store/store.js';
import type { ReplicaVerdict } from './volunteers.js';
import { logLine } from './log.js';

/**
 * Credit ([crowd]): per worker (and so per volunteer), builds run, wall time given, results
 * that agreed and that disagreed, as all-time totals and per-day rows (the last
 * `CREDIT_DAYS`), and the farm's capacity by hour of the week.
 *
 * CPU time is what the worker reports in its `state finished` (its claim, capped at wall time ×
 * the cores granted: master/cpu-claim.ts); 0 from workers that do not report it. Wall time is
 * started to finished on the master's clock, frozen time included.
 */

export const CREDIT_DAYS = 90;
const DAY_MS = 86_400_000;

export const dayOf = (iso: string): string => iso.slice(0, 10);
/** 0 = Sunday 00:00-00:59 UTC … 167 = Saturday 23:00-23:59 UTC. */
export const hourOfWeek = (d: Date): number => d.getUTCDay() * 24 + d.getUTCHours();
const firstDay = (now: number) => dayOf(new Date(now - (CREDIT_DAYS - 1) * DAY_MS).toISOString());

export const ZERO_CREDIT: CreditCounts = { builds: 0, cpuMs: 0, wallMs: 0, agreed: 0, disagreed: 0 };

export function addCounts(a: CreditCounts, b: CreditCounts): CreditCounts {
  return { builds: a.builds + b.builds, cpuMs: a.cpuMs + b.cpuMs, wallMs: a.wallMs + b.wallMs, agreed: a.agreed + b.agreed, disagreed: a.disagreed + b.disagreed };
}

export interface CreditDay extends CreditCounts { day: string }
export interface CapacityBucket { hourOfWeek: number; samples: number; average: number; max: number }

export class Credit {
  private sampler: NodeJS.Timeout | null = null;
  private prunedDay = '';

  constructor(private readonly store: Store, private readonly log: (line: string) => void = logLine) {}

  private async volunteerOf(worker: string): Promise<string | null> {
    return (await this.store.getToken(worker))?.volunteerId ?? null;
  }

  /** A build ended on a worker: one build run, its wall time, and the CPU time its worker reported (already bounded by the coordinator, cpu-claim.ts). */
  async buildFinished(row: BuildRow, cpuMs = 0): Promise<void> {
    if (!row.worker || !row.startedAt || !row.finishedAt) return;
    const wallMs = Math.max(0, Date.parse(row.finishedAt) - Date.parse(row.startedAt));
    await this.store.addCredit({
      day: dayOf(row.finishedAt), worker: row.worker, volunteerId: await this.volunteerOf(row.worker), ...ZERO_CREDIT, builds: 1, wallMs, cpuMs,
    });
  }

  /** A replicated group was decided: results that agreed and disagreed, counted on the day of the verdict. */
  async verdicts(list: readonly ReplicaVerdict[]): Promise<void> {
    const day = dayOf(new Date().toISOString());
    for (const r of list) {
      if (r.verdict === 'unverified') continue;
      await this.store.addCredit({
        day, worker: r.worker, volunteerId: await this.volunteerOf(r.worker), ...ZERO_CREDIT,
        agreed: r.verdict === 'verified' ? 1 : 0, disagreed: r.verdict === 'disagreed' ? 1 : 0,
      });
    }
  }

  /** Per-day series over the last CREDIT_DAYS days (every day present, zeros included); `volunteerId` null: the farm. */
  async series(volunteerId: string | null, now = Date.now()): Promise<CreditDay[]> {
    const rows = await this.store.listCreditDays(firstDay(now));
    const by = new Map<string, CreditCounts>();
    for (const r of rows) {
      if (volunteerId !== null && r.volunteerId !== volunteerId) continue;
      by.set(r.day, addCounts(by.get(r.day) ?? ZERO_CREDIT, r));
    }
    const out: CreditDay[] = [];
    for (let i = CREDIT_DAYS - 1; i >= 0; i--) {
      const day = dayOf(new Date(now - i * DAY_MS).toISOString());
      out.push({ day, ...(by.get(day) ?? ZERO_CREDIT) });
    }
    return out;
  }

  /** All-time totals per volunteer id, and per worker. */
  async totals(): Promise<{ volunteers: Map<string, CreditCounts>; workers: Map<string, CreditCounts & { volunteerId: string | null }> }> {
    const volunteers = new Map<string, CreditCounts>();
    const workers = new Map<string, CreditCounts & { volunteerId: string | null }>();
    for (const r of await this.store.listCreditTotals()) {
      const { worker, ...counts } = r;
      workers.set(worker, counts);
      if (r.volunteerId) volunteers.set(r.volunteerId, addCounts(volunteers.get(r.volunteerId) ?? ZERO_CREDIT, r));
    }
    return { volunteers, workers };
  }

  /** The 168 buckets of the week, each with how many workers were accepting on average and at most. */
  async capacity(): Promise<CapacityBucket[]> {
    const rows = new Map<number, CapacityRow>((await this.store.listCapacity()).map((r) => [r.hourOfWeek, r]));
    return Array.from({ length: 168 }, (_, h) => {
      const r = rows.get(h);
      return { hourOfWeek: h, samples: r?.samples ?? 0, average: r && r.samples ? r.workersSum / r.samples : 0, max: r?.workersMax ?? 0 };
    });
  }

  /** One sample now: how many connected workers are accepting builds. Also drops per-day rows older than CREDIT_DAYS. */
  async sample(accepting: number, now = new Date()): Promise<void> {
    await this.store.addCapacitySample(hourOfWeek(now), accepting);
    const first = firstDay(now.getTime());
    if (first !== this.prunedDay) {
      await this.store.pruneCreditDays(first);
      this.prunedDay = first;
    }
  }

  /** Samples capacity every `everyMs` (default a minute) until `close`. */
  startSampling(countAccepting: () => number, everyMs = 60_000): void {
    this.sampler = setInterval(() => void this.sample(countAccepting()).catch((e: Error) => this.log(`cannot sample capacity: ${e.message}`)), everyMs);
    this.sampler.unref();
  }

  close(): void {
    if (this.sampler) clearInterval(this.sampler);
    this.sampler = null;
  }
}
