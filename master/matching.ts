import type { BuilderDefinition } from '../protocol/builder-file.js';
import type { ExecutorKind } from '../protocol/build-spec.js';

/** What the scheduler needs to know about a connected worker. */
export interface WorkerOffer {
  name: string;
  labels: ReadonlySet<string>;
  executors: readonly ExecutorKind[];
  maxBuilds: number;
  running: number;
  /** A worker that is not accepting (its volunteer is at the desk, …) gets no new builds. */
  accepting: boolean;
}

/** The executor kind a builder would use on this worker, or null when the worker cannot run it. */
export function executorFor(builder: BuilderDefinition, worker: WorkerOffer): ExecutorKind | null {
  for (const label of builder.requires.labels) if (!worker.labels.has(label)) return null;
  const want = builder.requires.executor;
  if (want === 'any') {
    if (worker.executors.includes('container')) return 'container';
    if (worker.executors.includes('vm')) return 'vm';
    return null;
  }
  return worker.executors.includes(want) ? want : null;
}

/** Among workers with a free slot that can run the builder, the least loaded one. */
export function pickWorker<W extends WorkerOffer>(builder: BuilderDefinition, workers: Iterable<W>): { worker: W; executor: ExecutorKind } | null {
  let best: { worker: W; executor: ExecutorKind } | null = null;
  for (const w of workers) {
    if (!w.accepting || w.running >= w.maxBuilds) continue;
    const executor = executorFor(builder, w);
    if (!executor) continue;
    if (!best || w.running / w.maxBuilds < best.worker.running / best.worker.maxBuilds) best = { worker: w, executor };
  }
  return best;
}
