import { MAX_FRAME_BYTES } from './version.js';
import type { WorkerMessage } from './worker-messages.js';

/**
 * A build's next log text as one WebSocket text frame of its own (worker -> master, protocol 2):
 *
 *   L<buildId> <attempt>\n<log text>
 *   L<buildId> <attempt> <offset>\n<log text>     (FEATURE_LOG_ACK: where the text starts in the attempt's log)
 *
 * Logs are the bulk of what a worker sends; as JSON messages each chunk had to be escaped by
 * the worker and parsed back by the master. A log frame's text goes as it is, and the master
 * writes its bytes to the log as they came (its ws has checked them as UTF-8). The received
 * buffers are garbage V8 collects only after tens of MiB: the master's RSS is about 34 MiB higher
 * after a 20 MB log and stays so until a collection (bench/README.md, goals); decoding each
 * frame into a string instead kept that to about 11 MiB for more than twice the master's CPU.
 * Every other message is JSON, so a frame's first byte tells them apart ('L' or '{'). The text
 * is whole characters: the worker cuts each output stream at whole UTF-8 characters before it
 * joins the log.
 */
export const LOG_FRAME_MARK = 0x4c; // 'L'

/** Longest header: "L" + two 10-digit numbers, a 16-digit offset, two spaces and a newline. */
const MAX_HEADER_BYTES = 40;
const MAX_ID = 2 ** 32 - 1;

/** What a log frame says: the same message as a JSON `log` (protocol 1). */
export type LogMessage = Extract<WorkerMessage, { type: 'log' }>;

const utf8 = new TextDecoder();

/**
 * The frame of a build's log text. Given UTF-8 bytes (whole, valid characters: the worker's
 * path), the frame is bytes too, to be sent as a text frame as it is; given a string, a string.
 * (ws masks a frame given as bytes into a buffer of its own: the worker's copy stays intact.)
 */
export function encodeLogFrame(buildId: number, attempt: number, text: string, offset?: number): string;
export function encodeLogFrame(buildId: number, attempt: number, text: Uint8Array, offset?: number, room?: number): Uint8Array;
export function encodeLogFrame(buildId: number, attempt: number, text: string | Uint8Array, offset?: number, room = 0): string | Uint8Array {
  const header = logFrameHeader(buildId, attempt, offset);
  if (typeof text === 'string') return header + text;
  // `room`: bytes before `text` in its buffer that are the caller's to overwrite (LOG_FRAME_ROOM):
  // the header goes there, and the frame is a view of the same memory, not a copy.
  const frame = room >= header.length
    ? new Uint8Array(text.buffer, text.byteOffset - header.length, header.length + text.length)
    : new Uint8Array(header.length + text.length);
  for (let i = 0; i < header.length; i++) frame[i] = header.charCodeAt(i); // digits, spaces, "L", newline
  if (frame.buffer !== text.buffer) frame.set(text, header.length);
  return frame;
}

/** A log frame's header (ASCII: "L", digits, spaces, a newline); the frame is this, then the text. */
export function logFrameHeader(buildId: number, attempt: number, offset?: number): string {
  return offset === undefined ? `L${buildId} ${attempt}\n` : `L${buildId} ${attempt} ${offset}\n`;
}

/** Room for the longest header before a log frame's text, so that it can be framed where it lies (encodeLogFrame's `room`). */
export const LOG_FRAME_ROOM = MAX_HEADER_BYTES;

/** Whether a text frame is a log frame (else it is JSON). */
export function isLogFrame(frame: Uint8Array): boolean {
  return frame.length > 0 && frame[0] === LOG_FRAME_MARK;
}

/** A log frame's message with its text left as the frame's bytes (UTF-8, checked by whoever reads them). */
export type LogBytesMessage = Omit<LogMessage, 'data'> & { data: Uint8Array };

/** Reads a log frame. */
export function decodeLogFrame(frame: Uint8Array): { ok: true; value: LogMessage } | { ok: false; error: string } {
  const r = decodeLogFrameBytes(frame);
  return r.ok ? { ok: true, value: { ...r.value, data: utf8.decode(r.value.data) } } : r;
}

/**
 * Reads a log frame's header; its text stays the frame's bytes (a view, no copy), for a reader
 * that writes them as they are. They are what the worker sent: check that they are UTF-8.
 */
export function decodeLogFrameBytes(frame: Uint8Array): { ok: true; value: LogBytesMessage } | { ok: false; error: string } {
  if (frame.length > MAX_FRAME_BYTES) return { ok: false, error: `log frame of ${frame.length} bytes is over the limit of ${MAX_FRAME_BYTES}` };
  if (!isLogFrame(frame)) return { ok: false, error: 'a log frame starts with "L"' };
  const nl = frame.subarray(0, MAX_HEADER_BYTES).indexOf(10);
  if (nl < 0) return { ok: false, error: `log frame header "L<buildId> <attempt>" has no newline within ${MAX_HEADER_BYTES} bytes` };
  let header = '';
  for (let i = 1; i < nl; i++) header += String.fromCharCode(frame[i]!);
  const m = /^([1-9][0-9]{0,9}) ([1-9][0-9]{0,9})(?: (0|[1-9][0-9]{0,15}))?$/.exec(header);
  if (!m) return { ok: false, error: `log frame header "L${header.replace(/[^\x20-\x7e]/g, '?')}" is not "L<buildId> <attempt>[ <offset>]" with positive integers` };
  const buildId = Number(m[1]);
  const attempt = Number(m[2]);
  if (buildId > MAX_ID || attempt > MAX_ID) return { ok: false, error: `log frame buildId ${buildId} or attempt ${attempt} is over ${MAX_ID}` };
  const data = frame.subarray(nl + 1);
  if (m[3] === undefined) return { ok: true, value: { type: 'log', buildId, attempt, data } };
  const offset = Number(m[3]);
  if (offset > Number.MAX_SAFE_INTEGER) return { ok: false, error: `log frame offset ${m[3]} is over ${Number.MAX_SAFE_INTEGER}` };
  return { ok: true, value: { type: 'log', buildId, attempt, data, offset } };
}
