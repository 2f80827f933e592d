import { normalizeArch, normalizeOs, type BuilderDefinition } from '../protocol/builder-file.js';
import type { ExecutorKind } from '../protocol/build-spec.js';
import { ISOLATED_EXECUTORS } from '../protocol/executor-names.js';
import { formatSize } from '../protocol/units.js';

/** What the scheduler needs to know about a connected worker. */
export interface WorkerOffer {
  name: string;
  labels: ReadonlySet<string>;
  executors: readonly ExecutorKind[];
  maxBuilds: number;
  running: number;
  /** A worker that is not accepting (its volunteer is at the desk, …) gets no new builds. */
  accepting: boolean;
  /** What the volunteer allows builds to use (the machine's size, or less). */
  memoryBytes?: number;
  diskBytes?: number;
  /** The worker's platform and arch as it reported them (Node's names, e.g. linux, x64), and its CPUs. */
  platform?: string;
  arch?: string;
  cpus?: number;
  /**
   * The trust of the worker's volunteer ([crowd]); a token the maintainer made is `trusted`.
   * Absent counts as not trusted: a builder with `requires.trust: trusted` never goes there.
   */
  trust?: 'new' | 'trusted' | 'banned';
  /** Who owns the worker (its volunteer, or its token), for `verify.owners: distinct`. */
  owner?: string;
}

/**
 * Why this worker can never run this builder, or null when it can. A builder's memory and
 * disk limits are also what it needs: a build that was allowed 8 GiB is not squeezed into
 * a volunteer's 2 GiB, it goes to a worker that offers enough.
 */
export function mismatch(builder: BuilderDefinition, worker: WorkerOffer): string | null {
  // Checked first and before any spec is sent: a `trust: trusted` build never reaches anyone else.
  if (builder.requires.trust === 'trusted' && worker.trust !== 'trusted') {
    return `belongs to a volunteer whose trust is ${worker.trust ?? 'unknown'}; the builder needs trust: trusted`;
  }
  const missing = builder.requires.labels.filter((l) => !worker.labels.has(l));
  if (missing.length) return `lacks label${missing.length > 1 ? 's' : ''} ${missing.join(', ')}`;
  const { os, arch, cpus } = builder.requires;
  if (os && !(worker.platform !== undefined && os.includes(normalizeOs(worker.platform)))) {
    return `runs ${worker.platform ?? 'an unknown os'}, the builder needs ${os.join(' or ')}`;
  }
  if (arch && !(worker.arch !== undefined && arch.includes(normalizeArch(worker.arch)))) {
    return `is ${worker.arch ?? 'of an unknown arch'}, the builder needs ${arch.join(' or ')}`;
  }
  if (cpus !== undefined && worker.cpus !== undefined && worker.cpus < cpus) {
    return `offers ${worker.cpus} CPU${worker.cpus === 1 ? '' : 's'}, the builder needs ${cpus}`;
  }
  if (pickExecutor(builder, worker) === null) {
    return builder.requires.executor === 'any' ? 'has no isolated executor (container or vm)' : `has no ${builder.requires.executor} executor`;
  }
  const { memoryBytes, diskBytes } = builder.spec.limits;
  if (memoryBytes !== undefined && worker.memoryBytes !== undefined && worker.memoryBytes < memoryBytes) {
    return `offers ${formatSize(worker.memoryBytes)} of memory, the builder needs ${formatSize(memoryBytes)}`;
  }
  if (diskBytes !== undefined && worker.diskBytes !== undefined && worker.diskBytes < diskBytes) {
    return `offers ${formatSize(worker.diskBytes)} of disk, the builder needs ${formatSize(diskBytes)}`;
  }
  return null;
}

function pickExecutor(builder: BuilderDefinition, worker: WorkerOffer): ExecutorKind | null {
  const want = builder.requires.executor;
  if (want === 'any') return ISOLATED_EXECUTORS.find((e) => worker.executors.includes(e)) ?? null;
  return worker.executors.includes(want) ? want : null;
}

/** The executor kind a builder would use on this worker, or null when the worker cannot run it. */
export function executorFor(builder: BuilderDefinition, worker: WorkerOffer): ExecutorKind | null {
  return mismatch(builder, worker) === null ? pickExecutor(builder, worker) : null;
}

/**
 * Why no worker in `workers` can ever run the builder, one clause per worker, or null when
 * one can (busy or not). "no worker is connected" when there is none.
 */
export function whyUnrunnable(builder: BuilderDefinition, workers: readonly WorkerOffer[]): string | null {
  if (workers.length === 0) return 'no worker is connected';
  const reasons: string[] = [];
  for (const w of workers) {
    const why = mismatch(builder, w);
    if (why === null) return null;
    reasons.push(`${w.name} ${why}`);
  }
  return `no connected worker can run it: ${reasons.join('; ')}`;
}

/**
 * Among workers with a free slot that can run the builder, the least loaded one (the first
 * of equals). The walk stops at the first capable worker running nothing — none can be less
 * loaded — so with thousands of workers connected and most of them idle, a pick looks at the
 * busy ones ahead of it and one idle one, not at every worker.
 */
export function pickWorker<W extends WorkerOffer>(builder: BuilderDefinition, workers: Iterable<W>): { worker: W; executor: ExecutorKind } | null {
  let best: { worker: W; executor: ExecutorKind } | null = null;
  for (const w of workers) {
    if (!w.accepting || w.running >= w.maxBuilds) continue;
    const executor = executorFor(builder, w);
    if (!executor) continue;
    if (w.running === 0) return { worker: w, executor };
    if (!best || w.running / w.maxBuilds < best.worker.running / best.worker.maxBuilds) best = { worker: w, executor };
  }
  return best;
}
