import * as z from 'zod';

/**
 * The one integer version of the worker <-> master protocol. Both ends send it in
 * their first message. 2: build logs travel as log frames of their own (log-frame.ts) rather
 * than JSON messages.
 */
export const PROTOCOL_VERSION = 2;

/**
 * The oldest worker protocol a master still accepts, and until when (the stated window; a
 * master answers the hello of a worker in [OLDEST_WORKER_PROTOCOL, PROTOCOL_VERSION] in the
 * worker's own version). Protocol 1 differs from 2 only in how logs travel, and the master
 * still takes JSON `log` messages, so a protocol-1 worker is served unchanged.
 */
export const OLDEST_WORKER_PROTOCOL = 1;
export const OLDEST_WORKER_PROTOCOL_UNTIL = '2027-06-30';

/** The oldest worker protocol accepted at `now` (after the window, only the current one). */
export function oldestAcceptedProtocol(now: Date): number {
  return now.getTime() <= Date.parse(`${OLDEST_WORKER_PROTOCOL_UNTIL}T23:59:59Z`) ? OLDEST_WORKER_PROTOCOL : PROTOCOL_VERSION;
}

/** `GET /api/v1/version`: what the master runs and which worker protocols it accepts. */
export const VersionInfoSchema = z.object({
  version: z.string(),
  workerProtocols: z.object({
    oldest: z.number().int(),
    newest: z.number().int(),
    /** The date (UTC) until which `oldest` is accepted, when it is older than `newest`. */
    oldestUntil: z.string().nullable(),
  }),
});
export type VersionInfo = z.infer<typeof VersionInfoSchema>;

/** Largest frame either end accepts, in bytes. Bigger frames are refused, not parsed. */
export const MAX_FRAME_BYTES = 4 * 1024 * 1024;

/** Artifact bytes travel in chunks of at most this size (before base64). */
export const ARTIFACT_CHUNK_BYTES = 512 * 1024;

/**
 * The longest a worker keeps running its builds without a master, waiting to be adopted by
 * another one (the `adoption` message asks for its farm's lease time; this bounds it).
 */
export const MAX_ADOPTION_WINDOW_MS = 5 * 60 * 1000;
