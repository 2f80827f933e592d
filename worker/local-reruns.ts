import { BuildSpecSchema, type ExecutorKind, type Limits } from '../protocol/build-spec.js';
import type { HistoryEntry } from '../protocol/control-api.js';
import { executorFor } from './assignment-check.js';
import type { Executor } from './executors/executor.js';
import { FreezeGate } from './freeze-gate.js';
import type { HistoryStore } from './history-store.js';
import type { runBuild as RunBuild } from './runner.js';

export interface LocalRerunsOptions {
  history: HistoryStore;
  executors: ReadonlyMap<ExecutorKind, Executor>;
  workRoot: string;
  volunteerLimits: () => Limits;
  log: (line: string) => void;
  runBuild: typeof RunBuild;
}

/**
 * A developer's local re-runs of builds in this computer's history (the control API's
 * `POST /history/:id/rerun`, `crowdbake history`): run now, outside any master and its idle
 * rules, from the build spec the history kept — checked again with the spec's schema, as it
 * came from a master once — under the volunteer's limits of today, logged to the history only.
 */
export class LocalReruns {
  private readonly running = new Map<number, { controller: AbortController; done: Promise<unknown> }>();

  constructor(private readonly o: LocalRerunsOptions) {}

  /** Starts a re-run of local build `id`; returns its own history entry. Throws, naming the problem, when it cannot. */
  rerun(id: number): HistoryEntry {
    const { history, log } = this.o;
    const entry = history.get(id);
    if (!entry) throw new Error(`no local build ${id}`);
    const parsed = BuildSpecSchema.safeParse(history.spec(id));
    if (!parsed.success) throw new Error(`local build ${id} kept no build spec to run again`);
    const spec = parsed.data;
    const executor = this.o.executors.get(executorFor(spec));
    if (!executor) throw new Error(`this worker has no ${spec.executor} executor`);
    const localId = history.start({ buildId: entry.buildId, attempt: entry.attempt, master: 'local', builder: spec.builder, revision: spec.revision, spec, rerunOf: id });
    const controller = new AbortController();
    const gate = new FreezeGate();
    log(`local re-run ${localId} of ${spec.builder} (local build ${id}) started`);
    const done = this.o.runBuild({
      buildId: entry.buildId, attempt: entry.attempt, spec, executor, workRoot: this.o.workRoot, volunteerLimits: this.o.volunteerLimits(), masterUrl: entry.master,
      // Its own directory: two re-runs of one entry, or a re-run while the master's build of that number runs, never share one.
      dirName: `local-${localId}`,
      send: async () => undefined, sendLog: () => undefined, signal: controller.signal, gate, localLog: (data) => history.appendLog(localId, data),
    }).then((result) => history.finish(localId, result, 'local re-run', gate.frozenMs),
      (e: Error) => history.finish(localId, 'error', e.message, gate.frozenMs))
      .finally(() => this.running.delete(localId));
    this.running.set(localId, { controller, done });
    return history.get(localId)!;
  }

  /** Stops every re-run; resolves once they have ended. */
  async close(): Promise<void> {
    for (const r of this.running.values()) r.controller.abort();
    await Promise.all([...this.running.values()].map((r) => r.done));
  }
}
