import type { ServerResponse } from 'node:http';
import { collectDefaultMetrics, Counter, Gauge, Histogram, Registry } from 'prom-client';
import type { BuildRow, Store } from './store/store.js';
import type { WorkerSession } from './coordinator.js';

/**
 * What an operator's Prometheus scrapes at `GET /metrics` (prom-client, text format 0.0.4):
 *
 * - `crowdbake_queue_length` — builds waiting now; `crowdbake_queue_wait_seconds` — from
 *   queued (or requeued) to started, per attempt;
 * - `crowdbake_builds_finished_total{result}` — since this master started;
 * - `crowdbake_workers{state}` — idle, busy, frozen, draining (connected) and offline (known, not connected);
 * - `crowdbake_log_bytes_total`, `crowdbake_artifact_bytes_total` — stored since start;
 * - `crowdbake_store_seconds{op}` — every store call's latency, by method;
 * - the process's own (`process_*`, `nodejs_*`: CPU, memory, event-loop lag).
 *
 * Counters are this process's, as Prometheus expects (its `rate()` handles restarts). The
 * store is observed through a proxy (`instrument`), so neither the coordinator nor the
 * stores know about metrics.
 */
export class MasterMetrics {
  readonly registry = new Registry();
  private readonly queuedAt = new Map<number, number>();
  private readonly finished: Counter<'result'>;
  private readonly wait: Histogram;
  private readonly storeSeconds: Histogram<'op'>;
  readonly logBytes: Counter;
  readonly artifactBytes: Counter;

  constructor(sources: { queued(): number; sessions(): Iterable<WorkerSession>; knownWorkers(): Promise<number> }) {
    const registers = [this.registry];
    collectDefaultMetrics({ register: this.registry });
    new Gauge({ name: 'crowdbake_queue_length', help: 'Builds waiting for a worker', registers, collect() { this.set(sources.queued()); } });
    new Gauge({
      name: 'crowdbake_workers', help: 'Workers by state (offline: known to the store, not connected)', labelNames: ['state'], registers,
      async collect() {
        const n = { idle: 0, busy: 0, frozen: 0, draining: 0 };
        let connected = 0;
        for (const s of sources.sessions()) {
          connected++;
          n[s.draining ? 'draining' : s.frozen.size > 0 ? 'frozen' : s.builds.size > 0 ? 'busy' : 'idle']++;
        }
        for (const [state, v] of Object.entries(n)) this.set({ state }, v);
        this.set({ state: 'offline' }, Math.max(0, (await sources.knownWorkers()) - connected));
      },
    });
    this.finished = new Counter({ name: 'crowdbake_builds_finished_total', help: 'Builds finished, by result', labelNames: ['result'], registers });
    this.wait = new Histogram({
      name: 'crowdbake_queue_wait_seconds', help: 'Time from queued (or requeued) to started', registers,
      buckets: [0.005, 0.01, 0.05, 0.1, 0.5, 1, 5, 15, 60, 300, 900, 3600, 14400],
    });
    this.storeSeconds = new Histogram({
      name: 'crowdbake_store_seconds', help: 'Latency of store calls, by method', labelNames: ['op'], registers,
      buckets: [0.0001, 0.0005, 0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1, 5],
    });
    this.logBytes = new Counter({ name: 'crowdbake_log_bytes_total', help: 'Log bytes stored', registers });
    this.artifactBytes = new Counter({ name: 'crowdbake_artifact_bytes_total', help: 'Artifact bytes stored', registers });
  }

  /** The store, with every call timed and the build and artifact writes counted. */
  instrument(store: Store): Store {
    const patched = (id: number, patch: Partial<BuildRow>, queuedAt: number | null): void => {
      if (patch.state === 'queued') this.queuedAt.set(id, Date.now());
      if (patch.state === 'running') {
        const q = this.queuedAt.get(id) ?? queuedAt;
        if (q !== null && Number.isFinite(q)) this.wait.observe(Math.max(0, (Date.parse(patch.startedAt ?? '') || Date.now()) - q) / 1000);
        this.queuedAt.delete(id);
      }
      if (patch.state === 'finished') {
        this.queuedAt.delete(id);
        if (patch.result) this.finished.inc({ result: patch.result });
      }
    };
    const track = (op: string, args: unknown[], result: unknown): void => {
      if (op === 'insertBuild' || op === 'insertBuildGroup' || op === 'listUnfinishedBuilds') {
        const rows = (Array.isArray(result) ? result : [result]) as BuildRow[];
        for (const r of rows) if (r.state === 'queued') this.queuedAt.set(r.id, Date.parse(r.queuedAt));
      } else if (op === 'updateBuild') {
        const [id, patch] = args as [number, Partial<BuildRow>];
        patched(id, patch, null);
      } else if (op === 'claims.claim' && result) {
        // Several masters (PostgreSQL): a build leaves the queue through a claim, maybe one
        // queued through another master — its own row says since when it waited.
        const row = result as BuildRow;
        patched(row.id, { state: 'running', startedAt: row.startedAt }, Date.parse(row.queuedAt));
      } else if (op === 'claims.update' && result === true) {
        // A fenced write that took (false: this master no longer holds the attempt, nothing changed).
        const [id, , patch] = args as [number, unknown, Partial<BuildRow>];
        patched(id, patch, null);
      } else if (op === 'putArtifact') {
        this.artifactBytes.inc((args[0] as { size: number }).size);
      }
    };
    // One wrapper per method, made on first use: store calls are on the build path, so no
    // closure or label lookup per call.
    const wrap = (target: object, op: string, fn: (...a: unknown[]) => unknown): ((...args: unknown[]) => unknown) => {
      const timer = this.storeSeconds.labels(op);
      return (...args: unknown[]) => {
        const end = timer.startTimer();
        const out = fn.apply(target, args);
        if (out instanceof Promise) {
          return out.then((r: unknown) => { end(); track(op, args, r); return r; }, (e: unknown) => { end(); throw e; });
        }
        end();
        track(op, args, out);
        return out;
      };
    };
    const proxy = <T extends object>(inner: T, prefix: string, children: Record<string, object> = {}): T => {
      const wrapped = new Map<string, (...args: unknown[]) => unknown>();
      return new Proxy(inner, {
        get: (target, prop, receiver) => {
          if (typeof prop === 'string' && Object.hasOwn(children, prop)) return children[prop];
          const v = Reflect.get(target, prop, receiver) as unknown;
          if (typeof v !== 'function' || typeof prop !== 'string' || prop === 'close') return v;
          let w = wrapped.get(prop);
          if (!w) { w = wrap(target, `${prefix}${prop}`, v as (...a: unknown[]) => unknown); wrapped.set(prop, w); }
          return w;
        },
      });
    };
    // The claims of several masters (claims.ts) are where their builds change state: timed and
    // counted as `claims.claim`, `claims.update`, ….
    return proxy(store, '', store.claims ? { claims: proxy(store.claims, 'claims.') } : {});
  }

  async serve(res: ServerResponse): Promise<void> {
    const text = await this.registry.metrics();
    res.writeHead(200, { 'content-type': this.registry.contentType, 'content-length': Buffer.byteLength(text) });
    res.end(text);
  }
}

/** A master's lease among several on one PostgreSQL (master/farm/): null for one master on SQLite. */
export interface LeaseView {
  /** This master's id in the farm. */
  holder: string;
  /** Whether its lease is held now (false only while it steps down and joins again). */
  held: boolean;
  /** Times it lost its lease since it started. */
  losses: number;
  /** The singletons (repository polling, latent workers, retention) this master runs now. */
  singletons: string[];
  /** Running attempts this master adopted from workers whose master went away. */
  adopted: number;
}

/**
 * `GET /readyz` for load balancers: 200 when the store answers within 2 s, 503 with the
 * reason otherwise. `lease`: this master's lease among several (null for one master).
 */
export async function readiness(store: Store, timeoutMs = 2000, lease: LeaseView | null = null): Promise<{ status: number; body: { ready: boolean; store: string; storeMs: number | null; lease: LeaseView | null } }> {
  const started = performance.now();
  let timer: NodeJS.Timeout | undefined;
  try {
    await Promise.race([
      store.listBuilds({ limit: 1 }),
      new Promise((_, reject) => { timer = setTimeout(() => reject(new Error(`no answer within ${timeoutMs} ms`)), timeoutMs); }),
    ]);
    const ready = lease === null || lease.held;
    return { status: ready ? 200 : 503, body: { ready, store: 'ok', storeMs: Math.round((performance.now() - started) * 10) / 10, lease } };
  } catch (e) {
    return { status: 503, body: { ready: false, store: `unreachable: ${(e as Error).message}`, storeMs: null, lease } };
  } finally {
    clearTimeout(timer);
  }
}
