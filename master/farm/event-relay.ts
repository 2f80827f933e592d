import type { Client } from 'pg';
import { DashboardEventSchema, type DashboardEvent, type WorkerView } from '../../protocol/api.js';
import { EVENTS_CHANNEL } from '../../protocol/farm.js';
import type { EventBus } from '../events.js';
import { connectPostgres } from '../store/postgres-connect.js';

/** PostgreSQL refuses a NOTIFY payload of 8000 bytes or more; a log event's text is split below it. */
const MAX_PAYLOAD = 7000;
/** Events are sent at most this long after they happen, several in one statement. */
const SEND_MS = 20;
/** Events kept while the connection is down; past this the oldest are dropped (dashboards resync by reloading). */
const MAX_WAITING = 10_000;

interface Relayed {
  /** The master it comes from (its farm id). */
  m: string;
  e: DashboardEvent;
}

/**
 * Several masters on one PostgreSQL: what a dashboard sees live does not depend on which
 * master it is connected to. Each master sends its builds', workers' and logs' events to the
 * others over NOTIFY (channel EVENTS_CHANNEL) and publishes theirs on its own event bus, so the
 * dashboards' event socket carries the whole farm. The record stays the store (a dashboard
 * loads the lists from it); this only keeps open pages current.
 *
 * It also keeps the last view of each worker connected to another master, for
 * `GET /api/v1/workers` (its connection state lives in that master's memory); views of a
 * master whose lease ran out are dropped (`forgetMastersOtherThan`).
 *
 * Trust: the payloads come from other masters of the same farm (same database, same
 * credentials); each is still parsed with the dashboard event schema, and one that does not
 * parse is dropped.
 */
export class EventRelay {
  private client: Client | null = null;
  private waiting: string[] = [];
  private timer: NodeJS.Timeout | null = null;
  private sending = false;
  private republishing = false;
  private stopped = false;
  private retry: NodeJS.Timeout | null = null;
  private readonly unsubscribe: () => void;
  private readonly remoteWorkers = new Map<string, { view: WorkerView; master: string }>();

  constructor(
    private readonly url: string,
    private readonly bus: EventBus,
    /** This master's farm id now (it changes when the master joins again). */
    private readonly holder: () => string,
    /** Whether the worker is connected to this master. */
    private readonly isLocal: (worker: string) => boolean,
    private readonly log: (m: string) => void,
  ) {
    this.unsubscribe = bus.subscribe((e) => this.local(e));
  }

  async start(): Promise<void> {
    await this.listen();
  }

  /** The last view of a worker connected to another master, if any. */
  remoteWorker(name: string): WorkerView | undefined {
    return this.remoteWorkers.get(name)?.view;
  }

  /** Drops the worker views of masters not in `live` (their leases ran out). */
  forgetMastersOtherThan(live: ReadonlySet<string>): void {
    for (const [name, w] of this.remoteWorkers) if (!live.has(w.master)) this.remoteWorkers.delete(name);
  }

  async close(): Promise<void> {
    this.stopped = true;
    this.unsubscribe();
    if (this.timer) clearTimeout(this.timer);
    if (this.retry) clearTimeout(this.retry);
    await this.send();
    const c = this.client;
    this.client = null;
    await c?.end().catch(() => undefined);
  }

  private local(e: DashboardEvent): void {
    if (this.republishing || this.stopped || e.type === 'builders') return;
    const m = this.holder();
    if (e.type === 'log') {
      for (const payload of logPayloads(m, e.buildId, e.data)) this.queue(payload);
      return;
    }
    const payload = JSON.stringify({ m, e } satisfies Relayed);
    if (Buffer.byteLength(payload) < MAX_PAYLOAD) this.queue(payload);
    else this.log(`event relay: a ${e.type} event of ${Buffer.byteLength(payload)} bytes is too large to relay; other masters' dashboards see it at their next reload`);
  }

  private queue(payload: string): void {
    this.waiting.push(payload);
    if (this.waiting.length > MAX_WAITING) this.waiting.splice(0, this.waiting.length - MAX_WAITING);
    if (!this.timer) {
      this.timer = setTimeout(() => void this.send(), SEND_MS);
      this.timer.unref();
    }
  }

  private async send(): Promise<void> {
    this.timer = null;
    const c = this.client;
    if (this.sending || !c || this.waiting.length === 0) return;
    this.sending = true;
    const batch = this.waiting;
    this.waiting = [];
    try {
      await c.query('SELECT pg_notify($1, p) FROM unnest($2::text[]) AS p', [EVENTS_CHANNEL, batch]);
    } catch (e) {
      // Refused by the server (not a lost connection): sending it again would fail again and
      // hold up every later event, so this batch is dropped; dashboards catch up at a reload.
      if ((e as { code?: unknown }).code !== undefined && this.client === c) {
        this.log(`event relay: the database refused ${batch.length} event(s) for the other masters (${(e as Error).message}); dropped`);
      } else {
        this.waiting = [...batch, ...this.waiting].slice(-MAX_WAITING);
        this.log(`event relay: cannot send events to the other masters (${(e as Error).message})`);
      }
    } finally {
      this.sending = false;
    }
    if (this.waiting.length && !this.timer && !this.stopped) {
      this.timer = setTimeout(() => void this.send(), SEND_MS);
      this.timer.unref();
    }
  }

  private heard(payload: string | undefined): void {
    if (!payload) return;
    let r: Relayed;
    try {
      const v = JSON.parse(payload) as { m?: unknown; e?: unknown };
      const e = DashboardEventSchema.safeParse(v.e);
      if (typeof v.m !== 'string' || !e.success) return;
      r = { m: v.m, e: e.data };
    } catch {
      return;
    }
    if (r.m === this.holder()) return;
    if (r.e.type === 'worker') {
      const w = r.e.worker;
      if (w.connected) this.remoteWorkers.set(w.name, { view: w, master: r.m });
      else {
        // A master saying a worker left it: news only if the worker is not on another master
        // now (it may have moved here or elsewhere before the old one noticed).
        const had = this.remoteWorkers.get(w.name);
        if (this.isLocal(w.name) || (had && had.master !== r.m)) return;
        this.remoteWorkers.delete(w.name);
      }
    }
    this.republishing = true;
    try {
      this.bus.publish(r.e);
    } finally {
      this.republishing = false;
    }
  }

  private async listen(): Promise<void> {
    try {
      const c = await connectPostgres(this.url, (lost, why) => {
        if (this.client !== lost || this.stopped) return;
        this.client = null;
        this.log(`event relay: lost its connection (${why.message}); connecting again in 1s`);
        this.retry = setTimeout(() => void this.listen(), 1000);
        this.retry.unref();
      });
      c.on('notification', (n) => { if (n.channel === EVENTS_CHANNEL) this.heard(n.payload); });
      await c.query(`LISTEN ${EVENTS_CHANNEL}`);
      if (this.stopped) { await c.end().catch(() => undefined); return; }
      this.client = c;
      void this.send();
    } catch (e) {
      if (this.stopped) return;
      this.log(`event relay: cannot connect (${(e as Error).message}); trying again in 1s`);
      this.retry = setTimeout(() => void this.listen(), 1000);
      this.retry.unref();
    }
  }
}

/**
 * A log event's text as NOTIFY payloads, each under MAX_PAYLOAD bytes once encoded. The text
 * is a worker's: JSON can make one character 6 bytes (`\u0000`), so a piece that encodes too
 * large is cut smaller until it fits — a log of control characters must not make a payload
 * PostgreSQL refuses (that would stall every event behind it).
 */
export function logPayloads(m: string, buildId: number, data: string): string[] {
  const out: string[] = [];
  let i = 0;
  do {
    let step = Math.floor(MAX_PAYLOAD / 3);
    for (;;) {
      const payload = JSON.stringify({ m, e: { type: 'log', buildId, data: data.slice(i, i + step) } } satisfies Relayed);
      if (Buffer.byteLength(payload) < MAX_PAYLOAD || step === 1) { out.push(payload); break; }
      step = Math.max(1, Math.floor(step / 2));
    }
    i += step;
  } while (i < data.length);
  return out;
}
