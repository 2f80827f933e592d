import * as z from 'zod';
import { NameSchema } from './build-spec.js';
import { ExecutorNameSchema } from './executor-names.js';
import { decodeJson, type Decoded } from './parse.js';
import { EnvelopeSchema } from './provenance.js';
import { MAX_FRAME_BYTES } from './version.js';
import { buildRef, BuildResultSchema } from './worker-messages.js';
import { MAX_CPU_MS } from './worker-features.js';

/**
 * What a worker sends its master (the lifecycle is in worker-messages.ts, with what a master
 * sends): the schemas the master checks every worker frame against (master/worker-hub.ts).
 * Kept apart so that the worker agent, which only writes these messages, does not build them
 * (nor the provenance schemas they need) while it idles: it imports only their types.
 */

export const CapabilitiesSchema = z.strictObject({
  os: z.string().max(200),
  platform: z.string().max(50),
  arch: z.string().max(50),
  cpus: z.number().int().positive().max(4096),
  memoryBytes: z.number().int().nonnegative(),
  diskBytes: z.number().int().nonnegative(),
  // Names, not a closed list: an executor this master does not know is kept and never assigned.
  executors: z.array(ExecutorNameSchema).max(32),
  labels: z.array(z.string().min(1).max(100)).max(100),
  maxBuilds: z.number().int().positive().max(256),
  virtualization: z.boolean(),
});
export type Capabilities = z.infer<typeof CapabilitiesSchema>;

export const WorkerHelloSchema = z.strictObject({
  type: z.literal('hello'),
  protocol: z.number().int(),
  name: NameSchema,
  token: z.string().min(1).max(200),
  agentVersion: z.string().max(50),
  capabilities: CapabilitiesSchema,
  accepting: z.boolean().default(true),
  reason: z.string().max(500).default(''),
  /**
   * The attempts this worker is still running from an earlier connection, sent only to a
   * master that offered adoption (`adoption` message): that master takes them over if the
   * store says they are this worker's current attempts, and cancels the rest.
   */
  running: z.array(z.strictObject(buildRef)).max(256).optional(),
});

export const WorkerMessageSchema = z.discriminatedUnion('type', [
  WorkerHelloSchema,
  z.strictObject({ type: z.literal('accepted'), ...buildRef }),
  z.strictObject({
    type: z.literal('step'),
    ...buildRef,
    index: z.number().int().nonnegative(),
    name: z.string().max(100),
    state: z.enum(['running', 'finished']),
    result: BuildResultSchema.nullable(),
    // Stored in a 32-bit column (PostgreSQL INTEGER); a process's exit status fits.
    exitCode: z.number().int().min(-(2 ** 31)).max(2 ** 31 - 1).nullable(),
  }),
  /** `offset`: where `data` starts in the attempt's log, in UTF-16 code units (FEATURE_LOG_ACK; log frames carry it in their header). */
  z.strictObject({ type: z.literal('log'), ...buildRef, data: z.string(), offset: z.number().int().nonnegative().max(Number.MAX_SAFE_INTEGER).optional() }),
  /** The commit the worker checked out (full sha-1 or sha-256). */
  z.strictObject({ type: z.literal('revision'), ...buildRef, revision: z.string().regex(/^(?:[0-9a-f]{40}|[0-9a-f]{64})$/) }),
  z.strictObject({
    type: z.literal('artifact'),
    ...buildRef,
    name: z.string().min(1).max(255).refine((n) => !n.includes('/') && !n.includes('\\') && n !== '.' && n !== '..', 'must be a plain file name'),
    size: z.number().int().nonnegative(),
    sha256: z.string().regex(/^[0-9a-f]{64}$/),
    offset: z.number().int().nonnegative(),
    data: z.string(),
    last: z.boolean(),
  }),
  /**
   * The worker is leaving (SIGTERM, `crowdbake drain`, a spot interruption notice): it takes
   * nothing new. `now: false` finishes its builds first; `now: true` gives them back, and the
   * master requeues them at once as an infrastructure retry (not counted as a failed attempt).
   */
  z.strictObject({ type: z.literal('drain'), now: z.boolean(), reason: z.string().max(500) }),
  /** Whether the worker takes new builds now (the volunteer is at the desk, paused, …). */
  z.strictObject({ type: z.literal('availability'), accepting: z.boolean(), reason: z.string().max(500) }),
  z.strictObject({
    type: z.literal('state'),
    ...buildRef,
    state: z.enum(['running', 'frozen', 'finished']),
    result: BuildResultSchema.nullable(),
    message: z.string().max(10_000).nullable(),
    /** With `finished`: the attempt's signed statement ([provenance], protocol/provenance.ts), from a worker with an enrolled key. */
    provenance: EnvelopeSchema.optional(),
    /**
     * With `finished`: the CPU time the attempt used, in ms, as the worker measured it. Sent
     * only to a master that announced FEATURE_CPU_TIME (worker-features.ts). A claim: the
     * master caps it (master/cpu-claim.ts).
     */
    cpuMs: z.number().int().nonnegative().max(MAX_CPU_MS).optional(),
  }),
]);
export type WorkerMessage = z.infer<typeof WorkerMessageSchema>;
export type WorkerHello = z.infer<typeof WorkerHelloSchema>;

export function decodeWorkerMessage(text: string): Decoded<WorkerMessage> {
  return decodeJson(WorkerMessageSchema, text, MAX_FRAME_BYTES);
}
