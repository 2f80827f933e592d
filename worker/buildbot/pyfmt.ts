import { constants } from 'node:os';
import { getSystemErrorMap } from 'node:util';

/**
 * Text exactly as the stock (Python) worker prints it in log headers: repr() of values,
 * shlex.quote()d command lines, strerror() messages and "%0.6f" numbers. Logs on the master
 * then read the same whichever worker ran the step.
 */

const NON_PRINTABLE = /[\p{Cc}\p{Cf}\p{Cs}\p{Co}\p{Cn}\p{Zl}\p{Zp}\p{Zs}]/u;

/** Python's repr() of a str. */
export function reprStr(s: string): string {
  const quote = s.includes("'") && !s.includes('"') ? '"' : "'";
  let out = quote;
  for (const ch of s) {
    if (ch === quote || ch === '\\') out += `\\${ch}`;
    else if (ch === '\n') out += '\\n';
    else if (ch === '\r') out += '\\r';
    else if (ch === '\t') out += '\\t';
    else if (ch !== ' ' && NON_PRINTABLE.test(ch)) out += escapeCodePoint(ch.codePointAt(0)!);
    else out += ch;
  }
  return out + quote;
}

function escapeCodePoint(cp: number): string {
  if (cp < 0x100) return `\\x${cp.toString(16).padStart(2, '0')}`;
  if (cp < 0x10000) return `\\u${cp.toString(16).padStart(4, '0')}`;
  return `\\U${cp.toString(16).padStart(8, '0')}`;
}

/** Python's repr() of bytes (b'...'). */
export function reprBytes(b: Uint8Array): string {
  const hasSingle = b.includes(0x27);
  const quote = hasSingle && !b.includes(0x22) ? '"' : "'";
  let out = `b${quote}`;
  for (const c of b) {
    if (c === quote.charCodeAt(0) || c === 0x5c) out += `\\${String.fromCharCode(c)}`;
    else if (c === 0x0a) out += '\\n';
    else if (c === 0x0d) out += '\\r';
    else if (c === 0x09) out += '\\t';
    else if (c < 0x20 || c >= 0x7f) out += `\\x${c.toString(16).padStart(2, '0')}`;
    else out += String.fromCharCode(c);
  }
  return out + quote;
}

/** Python's repr() of a decoded msgpack value (str, number, bool, None, list, dict, bytes). */
export function repr(v: unknown): string {
  if (v === null || v === undefined) return 'None';
  if (typeof v === 'string') return reprStr(v);
  if (typeof v === 'boolean') return v ? 'True' : 'False';
  if (typeof v === 'number' || typeof v === 'bigint') return String(v);
  if (v instanceof Uint8Array) return reprBytes(v);
  if (Array.isArray(v)) return `[${v.map(repr).join(', ')}]`;
  if (typeof v === 'object') {
    return `{${Object.entries(v as Record<string, unknown>).map(([k, x]) => `${reprStr(k)}: ${repr(x)}`).join(', ')}}`;
  }
  return String(v);
}

/** Python's str() of a value, as the stock worker turns non-string argv items into text. */
export function pyStr(v: unknown): string {
  return typeof v === 'string' ? v : repr(v);
}

/** The display form of a command: shlex.quote() of each word, '""' for an empty one. */
export function shellQuote(words: string[]): string {
  return words.map((w) => {
    if (w === '') return '""';
    if (!/[^A-Za-z0-9_@%+=:,./-]/.test(w)) return w;
    return `'${w.replace(/'/g, `'"'"'`)}'`;
  }).join(' ');
}

/** The argv header: the repr() of the command as bytes, like `[b'echo', b'hi']`. */
export function reprCommandBytes(command: string | string[]): string {
  if (typeof command === 'string') return reprBytes(Buffer.from(command));
  return `[${command.map((w) => reprBytes(Buffer.from(w))).join(', ')}]`;
}

// libuv's messages are lower-case and a few differ from glibc's strerror().
const STRERROR: Record<string, string> = {
  EEXIST: 'File exists', EISDIR: 'Is a directory', ELOOP: 'Too many levels of symbolic links',
  ENAMETOOLONG: 'File name too long', EROFS: 'Read-only file system', ENOSPC: 'No space left on device',
  EXDEV: 'Invalid cross-device link', EBUSY: 'Device or resource busy', EINVAL: 'Invalid argument',
};

/** errno number and strerror() text of a Node fs error, as Python's OSError carries them. */
export function osError(e: unknown): { errno: number; strerror: string } {
  const code = (e as NodeJS.ErrnoException | null)?.code ?? '';
  const errno = (constants.errno as Record<string, number>)[code];
  if (errno === undefined) return { errno: 1, strerror: e instanceof Error ? e.message : String(e) };
  const text = STRERROR[code] ?? getSystemErrorMap().get(-errno)?.[1] ?? code;
  return { errno, strerror: text.charAt(0).toUpperCase() + text.slice(1) };
}

/** Signal number of a signal name ('SIGKILL' or 'KILL'), or undefined. */
export function signalNumber(name: string): number | undefined {
  const n = name.startsWith('SIG') ? name : `SIG${name}`;
  return (constants.signals as Record<string, number>)[n];
}

/** "%0.6f" */
export function fixed6(seconds: number): string {
  return seconds.toFixed(6);
}
