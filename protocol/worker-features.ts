/**
 * Optional parts of the worker protocol, announced by the master in its answer to the
 * WebSocket upgrade (`x-crowdbake-features: cpu-time, …`). Both messages stay strict zod
 * schemas, so a field an older master does not know would be refused; a worker therefore
 * sends an optional field only when the master announced it, and an older worker (which
 * never reads the header) sends nothing new. Neither side needs a protocol version bump.
 *
 * No I/O here; protocol/ imports only zod.
 */

export const FEATURES_HEADER = 'x-crowdbake-features';

/** The worker may put `cpuMs` (the CPU time the build used) in its `state finished` message. */
export const FEATURE_CPU_TIME = 'cpu-time';

/**
 * [provenance] The worker may put `provenance` (its signed statement of the attempt) in its
 * `state finished` message, of buildType v2 (`CROWDBAKE_BUILD_TYPE`: the spec digest without
 * the executor). A master that announces only the older `provenance` refuses a v2 statement,
 * so a worker of this version signs for it nothing: its attempts there are unsigned.
 */
export const FEATURE_PROVENANCE = 'provenance-v2';

/** [provenance] The first version of the feature: statements of buildType v1. Still announced, so that older workers sign. */
export const FEATURE_PROVENANCE_V1 = 'provenance';

/**
 * The master shares its store with other masters and adopts running attempts: the worker may
 * name them in its hello (`running`). Announced only by a master on a shared (PostgreSQL) store.
 */
export const FEATURE_ADOPTION = 'adoption';

/**
 * The master keeps build logs in its shared store and acknowledges what it has stored
 * (`logAck`): the worker numbers each log frame with its offset in the attempt's log
 * (`L<buildId> <attempt> <offset>`) and keeps what is not acknowledged yet, to send again to
 * the master that adopts the attempt after a fail-over. Announced with FEATURE_ADOPTION.
 */
export const FEATURE_LOG_ACK = 'log-ack';

/** What this version of the master understands (FEATURE_ADOPTION and FEATURE_LOG_ACK are added by masters on a shared store). */
export const MASTER_FEATURES: readonly string[] = [FEATURE_CPU_TIME, FEATURE_PROVENANCE, FEATURE_PROVENANCE_V1];

/**
 * What a worker understands of the master's optional messages, announced in its WebSocket
 * upgrade request (`x-crowdbake-worker-features: drain`): older masters ignore the header.
 */
export const WORKER_FEATURES_HEADER = 'x-crowdbake-worker-features';

/** The worker decodes the master's `drain` message (a protocol-1 worker's strict schema refuses it). */
export const WORKER_FEATURE_DRAIN = 'drain';

/** What this version of the worker understands. */
export const WORKER_FEATURES: readonly string[] = [WORKER_FEATURE_DRAIN];

/**
 * Whether the master may send `drain` to this worker: it announced it, or — until workers send
 * the header (worker/master-link.ts does not yet) — it speaks protocol 2, which every worker
 * that has `drain` speaks. A protocol-1 worker never gets it; the master closes its connection
 * instead (master/worker-hub.ts).
 */
export function workerUnderstandsDrain(announced: ReadonlySet<string>, protocol: number): boolean {
  return announced.has(WORKER_FEATURE_DRAIN) || protocol >= 2;
}

/** The largest `cpuMs` a worker may claim for one attempt: 256 cores for 30 days. The master caps it far lower (cpu-claim.ts). */
export const MAX_CPU_MS = 256 * 30 * 86_400_000;

/** The features named in the header (a list, comma separated; case and spaces ignored). */
export function parseFeatures(header: string | string[] | undefined): Set<string> {
  const text = Array.isArray(header) ? header.join(',') : header ?? '';
  return new Set(text.split(',').map((f) => f.trim().toLowerCase()).filter(Boolean));
}
