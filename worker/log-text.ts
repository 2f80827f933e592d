import { isAscii, isUtf8 } from 'node:buffer';

/**
 * A piece of a build's log as it goes to the master and the local history: UTF-8 bytes of whole,
 * valid characters, and their length in UTF-16 code units (what FEATURE_LOG_ACK offsets count,
 * so that they stay the same as when the log travelled as JS strings).
 *
 * A step's output is kept as the bytes read from its pipe: for valid UTF-8 (nearly all output)
 * nothing is decoded into a string and encoded back, which was most of the worker's work on a
 * loud step's log (bench/README.md, "A loud step's log").
 */
export interface LogText {
  bytes: Buffer;
  units: number;
  /**
   * Bytes just before `bytes` in its buffer that are free: the link writes the log frame's header
   * there once, and sends the frame without copying the text (protocol/log-frame.ts LOG_FRAME_ROOM).
   */
  room?: number;
}

/**
 * A log frame's text from this size on goes without a copy when it is one piece: the runner
 * passes it on as read (LogBuffer.deliver) and the link writes its header beside it
 * (master-link.ts writeSplitFrame). A shorter piece is copied, exactly sized, with its header:
 * a copy of a few bytes costs less than two writes, and a small view kept until acknowledged
 * would hold its whole parent buffer (a 64 KiB read, an 8 KiB pool slab) alive.
 */
export const SPLIT_MIN = 16 * 1024;

/** Text the worker writes itself (its own lines). */
export function logText(text: string): LogText {
  return { bytes: Buffer.from(text), units: text.length };
}

/** UTF-16 length of valid UTF-8: one unit per character, two for those above U+FFFF (4-byte sequences). */
export function utf16Units(bytes: Uint8Array): number {
  if (isAscii(bytes)) return bytes.length;
  let n = 0;
  for (let i = 0; i < bytes.length; i++) {
    const b = bytes[i]!;
    if ((b & 0xc0) !== 0x80) n += b >= 0xf0 ? 2 : 1;
  }
  return n;
}

/**
 * Where the last whole character of `bytes` ends: before a multi-byte sequence the chunk cuts
 * short (its rest comes with the next chunk), else the end. Invalid bytes are not looked at here.
 */
export function wholeCharsEnd(bytes: Uint8Array): number {
  const n = bytes.length;
  for (let i = n - 1; i >= 0 && i >= n - 4; i--) {
    const b = bytes[i]!;
    if ((b & 0xc0) === 0x80) continue; // a continuation byte: its lead is further back
    const need = b >= 0xf0 && b <= 0xf7 ? 4 : b >= 0xe0 && b < 0xf0 ? 3 : b >= 0xc0 && b < 0xe0 ? 2 : 1;
    return n - i < need ? i : n;
  }
  return n;
}

/**
 * One output stream of a step (stdout or stderr) as whole characters: `write` hands back the
 * chunk's complete characters and keeps a character cut by the chunk's end for the next one.
 * Valid UTF-8 passes as the same bytes; anything else is decoded with replacement characters
 * (U+FFFD), as a string decoder would, and encoded again.
 */
export class Utf8Stream {
  private tail: Buffer | null = null;
  private readonly decoder = new TextDecoder('utf-8', { fatal: false });

  write(chunk: Buffer): LogText | null {
    const data = this.tail ? Buffer.concat([this.tail, chunk]) : chunk;
    const end = wholeCharsEnd(data);
    // A copy: the few bytes kept must not hold on to the whole chunk.
    this.tail = end < data.length ? Buffer.from(data.subarray(end)) : null;
    if (end === 0) return null;
    const whole = end === data.length ? data : data.subarray(0, end);
    if (isAscii(whole)) return { bytes: whole, units: whole.length };
    if (isUtf8(whole)) return { bytes: whole, units: utf16Units(whole) };
    return logText(this.decoder.decode(whole));
  }

  /**
   * The stream ended (the step's process is done and its output read): a character its last
   * chunk cut short will not be completed, and goes as U+FFFD, as a string decoder's end() makes
   * it — not dropped, and not glued to the next step's first bytes.
   */
  end(): LogText | null {
    const tail = this.tail;
    this.tail = null;
    return tail ? logText(this.decoder.decode(tail)) : null;
  }
}
