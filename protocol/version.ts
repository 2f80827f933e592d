/**
 * The one integer version of the worker <-> master protocol. Both ends send it in
 * their first message and refuse a peer that speaks another one. 2: build logs travel as
 * log frames of their own (log-frame.ts) rather than JSON messages.
 */
export const PROTOCOL_VERSION = 2;

/** Largest frame either end accepts, in bytes. Bigger frames are refused, not parsed. */
export const MAX_FRAME_BYTES = 4 * 1024 * 1024;

/** Artifact bytes travel in chunks of at most this size (before base64). */
export const ARTIFACT_CHUNK_BYTES = 512 * 1024;

/**
 * The longest a worker keeps running its builds without a master, waiting to be adopted by
 * another one (the `adoption` message asks for its farm's lease time; this bounds it).
 */
export const MAX_ADOPTION_WINDOW_MS = 5 * 60 * 1000;
