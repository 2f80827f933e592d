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

/** [provenance] The worker may put `provenance` (its signed statement of the attempt) in its `state finished` message. */
export const FEATURE_PROVENANCE = 'provenance';

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

/** What this version of the master understands (FEATURE_ADOPTION is added by masters that adopt). */
export const MASTER_FEATURES: readonly string[] = [FEATURE_CPU_TIME, FEATURE_PROVENANCE];

/** The largest `cpuMs` a worker may claim for one attempt: 256 cores for 30 days. The master caps it far lower (cpu-claim.ts). */
export const MAX_CPU_MS = 256 * 30 * 86_400_000;

/** The features named in the header (a list, comma separated; case and spaces ignored). */
export function parseFeatures(header: string | string[] | undefined): Set<string> {
  const text = Array.isArray(header) ? header.join(',') : header ?? '';
  return new Set(text.split(',').map((f) => f.trim().toLowerCase()).filter(Boolean));
}
