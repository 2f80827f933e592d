import * as z from 'zod';
import { BuildSpecSchema } from './build-spec.js';
import { decodeJson, type Decoded } from './parse.js';
import { MAX_ADOPTION_WINDOW_MS, MAX_FRAME_BYTES } from './version.js';

/**
 * Worker <-> master messages: JSON text frames over one WebSocket that the worker dials, and
 * text frames of their own for build logs (log-frame.ts; a JSON `log` message is accepted too).
 *
 * Lifecycle: worker `hello` -> master `welcome` (or `error` + close) -> master `assign` ->
 * worker `accepted` -> `revision` (with a source) -> `step`/`log`/`artifact` ... -> `state` finished. The master may send
 * `cancel` at any time; the worker answers with `state` finished/cancelled. Liveness is
 * WebSocket ping/pong. Every message about a build carries its `attempt`; the master ignores
 * messages for an attempt that is no longer current (the build was requeued meanwhile).
 */

// What a worker sends (hello, step, log, state…) is checked by the master against
// from-worker.ts, which a worker never loads: it would build the provenance schemas (about
// 0.7 MiB of an idle agent's heap, bench/README.md) only to describe its own messages.
export type { Capabilities, WorkerHello, WorkerMessage } from './from-worker.js';

export const BuildResultSchema = z.enum(['success', 'failure', 'cancelled', 'error']);
export type BuildResult = z.infer<typeof BuildResultSchema>;

/** The build and attempt every message about a build names (both directions). */
export const buildRef = { buildId: z.number().int().positive(), attempt: z.number().int().positive() };

export const MasterMessageSchema = z.discriminatedUnion('type', [
  z.strictObject({ type: z.literal('welcome'), protocol: z.number().int(), name: z.string(), heartbeatMs: z.number().int().positive() }),
  z.strictObject({ type: z.literal('assign'), ...buildRef, spec: BuildSpecSchema }),
  z.strictObject({ type: z.literal('cancel'), ...buildRef, reason: z.string() }),
  z.strictObject({ type: z.literal('error'), message: z.string(), fatal: z.boolean() }),
  /**
   * Sent after `welcome` by a master that shares its store with others: when this connection
   * is lost, keep running for up to `windowMs`, dial the next master URL and name the running
   * attempts in the hello (`running`). An older worker ignores the message (unknown type) and
   * stops its builds on a disconnect, as before.
   */
  z.strictObject({ type: z.literal('adoption'), windowMs: z.number().int().positive().max(MAX_ADOPTION_WINDOW_MS) }),
  /**
   * FEATURE_LOG_ACK: the first `offset` code units of this attempt's log are in the farm's
   * store; the worker may forget them. Sent by the master that holds the attempt.
   */
  z.strictObject({ type: z.literal('logAck'), ...buildRef, offset: z.number().int().nonnegative().max(Number.MAX_SAFE_INTEGER) }),
  /** The admin asked this worker to leave (REST drain): take nothing new from this master, finish (or, `now`, stop) its builds, disconnect. */
  z.strictObject({ type: z.literal('drain'), now: z.boolean(), reason: z.string().max(500) }),
]);
export type MasterMessage = z.infer<typeof MasterMessageSchema>;

export function decodeMasterMessage(text: string): Decoded<MasterMessage> {
  return decodeJson(MasterMessageSchema, text, MAX_FRAME_BYTES);
}
