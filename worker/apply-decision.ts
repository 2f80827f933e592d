import type { ExecutorKind } from '../protocol/build-spec.js';
import type { WorkerMessage } from '../protocol/worker-messages.js';
import type { Running } from './build-intake.js';
import type { Executor } from './executors/executor.js';
import type { Decision } from './policy.js';

export interface DecisionApplierOptions {
  executors: ReadonlyMap<ExecutorKind, Pick<Executor, 'kind' | 'setWarm'>>;
  /** Every build running here, over every project (those left and still stopping too). */
  allRunning: () => [number, Running][];
  /** The projects served now: each is told the state of its builds. */
  projects: () => Iterable<{ running: Map<number, Running>; send: (m: WorkerMessage) => Promise<unknown> }>;
  draining: () => boolean;
  /** Offers the slots again (forced: each master is told, even when nothing changed). */
  offer: (force: boolean) => void;
  log: (line: string) => void;
}

/**
 * The governor's decisions (policy.ts), applied one after another in the order they came:
 * every build frozen, or thawed under the CPU cap of "keep going gently" or of the temperature
 * cap; each master told its builds' state (it shows `frozen` and stops assigning); warm
 * sandboxes kept only while builds may run; the slots offered again.
 */
export class DecisionApplier {
  private applying: Promise<void> = Promise.resolve();

  constructor(private readonly o: DecisionApplierOptions) {}

  /** Queues `d` behind the decisions before it; a failure is logged, and the next one still runs. */
  apply(d: Decision): Promise<void> {
    this.applying = this.applying.then(() => this.applyNow(d)).catch((e: Error) => this.o.log(`freeze/thaw failed: ${e.message}`));
    return this.applying;
  }

  /** Warm sandboxes only while builds may run: removed when paused, in use, off schedule, too hot, draining or stopping. */
  setWarm(allowed: boolean): Promise<void> {
    return Promise.all([...this.o.executors.values()].map((e) =>
      e.setWarm?.(allowed).catch((err: Error) => this.o.log(`warm sandboxes: ${err.message}`)))).then(() => {});
  }

  private async applyNow(d: Decision): Promise<void> {
    const { o } = this;
    const started = Date.now();
    void this.setWarm(d.run && !o.draining());
    const builds = o.allRunning();
    if (!d.freeze) await Promise.all(builds.map(async ([, r]) => { await r.gate.limitCpu(d.cpuCap); await r.gate.thaw(); }));
    else await Promise.all(builds.map(([, r]) => r.gate.freeze()));
    for (const c of o.projects()) {
      for (const [buildId, r] of c.running) {
        void c.send({ type: 'state', buildId, attempt: r.attempt, state: d.freeze || r.gate.heldByCap ? 'frozen' : 'running', result: null, message: d.reason });
      }
    }
    o.offer(true);
    o.log(`${d.run ? 'builds may run' : 'builds held'}: ${d.reason}${builds.length ? ` (${builds.length} build(s) ${d.run ? 'thawed' : 'frozen'} in ${Date.now() - started} ms)` : ''}`);
  }
}
