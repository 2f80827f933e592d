import { MAX_FRAME_BYTES } from './version.js';

/**
 * A build's log bytes as one binary WebSocket frame (worker -> master, protocol 2). Logs are
 * the bulk of what a worker sends; as JSON text each chunk had to be escaped by the worker and
 * parsed back by the master, which bounded a loud step's log to about 80 MB/s.
 *
 *   byte 0      kind, 1 = log
 *   bytes 1-4   buildId, unsigned 32-bit big-endian, >= 1
 *   bytes 5-8   attempt, unsigned 32-bit big-endian, >= 1
 *   bytes 9-    the log's next bytes: UTF-8, and a frame may end inside a character (the next
 *               frame of the same build continues it)
 *
 * Every other message stays a JSON text frame.
 */
export const LOG_FRAME_KIND = 1;
export const LOG_FRAME_HEADER_BYTES = 9;

export interface LogBytes {
  type: 'log';
  buildId: number;
  attempt: number;
  data: Uint8Array;
}

export function encodeLogFrame(buildId: number, attempt: number, data: Uint8Array): Uint8Array {
  const frame = new Uint8Array(LOG_FRAME_HEADER_BYTES + data.length);
  frame.set(data, LOG_FRAME_HEADER_BYTES);
  return writeLogHeader(frame, buildId, attempt);
}

/** Fills in the header of a frame whose log bytes are already in place after its first 9 bytes (no copy). */
export function writeLogHeader(frame: Uint8Array, buildId: number, attempt: number): Uint8Array {
  const view = new DataView(frame.buffer, frame.byteOffset, LOG_FRAME_HEADER_BYTES);
  view.setUint8(0, LOG_FRAME_KIND);
  view.setUint32(1, buildId);
  view.setUint32(5, attempt);
  return frame;
}

/** Reads a binary frame; the data is a view into `frame`, not a copy. */
export function decodeLogFrame(frame: Uint8Array): { ok: true; value: LogBytes } | { ok: false; error: string } {
  if (frame.length > MAX_FRAME_BYTES) return { ok: false, error: `binary frame of ${frame.length} bytes is over the limit of ${MAX_FRAME_BYTES}` };
  if (frame.length < LOG_FRAME_HEADER_BYTES) return { ok: false, error: `binary frame of ${frame.length} bytes is shorter than the ${LOG_FRAME_HEADER_BYTES}-byte log header` };
  const view = new DataView(frame.buffer, frame.byteOffset, frame.byteLength);
  const kind = view.getUint8(0);
  if (kind !== LOG_FRAME_KIND) return { ok: false, error: `binary frame of unknown kind ${kind} (only ${LOG_FRAME_KIND}, log, exists)` };
  const buildId = view.getUint32(1);
  const attempt = view.getUint32(5);
  if (buildId < 1 || attempt < 1) return { ok: false, error: `log frame with buildId ${buildId} and attempt ${attempt} (both must be at least 1)` };
  return { ok: true, value: { type: 'log', buildId, attempt, data: frame.subarray(LOG_FRAME_HEADER_BYTES) } };
}
