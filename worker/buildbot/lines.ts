/**
 * Log text travels to a msgpack master as whole lines: `[text, newline offsets, times]`, and
 * the master appends `text` to the log without splitting it again. These are the worker side
 * of that: a line splitter (buildbot_worker/util/lineboundaries.py, without its bug that
 * drops text from lines longer than max_line_length) and the update batcher
 * (util/buffer_manager.py).
 */

/** `[text, offsets of each "\n" in text, time (s) each line began]` */
export type Lines = [string, number[], number[]];
export type UpdatePair = [string, unknown];

export const DEFAULT_NEWLINE_RE = '(\\r\\n|\\r(?=.)|\\033\\[u|\\033\\[[0-9]+;[0-9]+[Hf]|\\033\\[2J|\\x08+)';

/**
 * The master's newline_re is a Python pattern: translate the two constructs that differ in
 * JavaScript (octal escapes like \033, and "." which in Python matches "\r" too).
 */
export function pythonRegex(pattern: string): RegExp {
  let out = '';
  let inClass = false;
  for (let i = 0; i < pattern.length; i++) {
    const c = pattern[i]!;
    if (c === '\\') {
      const oct = /^[0-7]{2,3}/.exec(pattern.slice(i + 1));
      if (oct && pattern[i + 1] === '0') {
        out += `\\x${parseInt(oct[0], 8).toString(16).padStart(2, '0')}`;
        i += oct[0].length;
      } else {
        out += c + (pattern[i + 1] ?? '');
        i++;
      }
    } else if (c === '[' && !inClass) { inClass = true; out += c; }
    else if (c === ']' && inClass) { inClass = false; out += c; }
    else if (c === '.' && !inClass) out += '[^\\n]';
    else out += c;
  }
  return new RegExp(out, 'g');
}

export class LineSplitter {
  private partial = '';
  private partialTime = 0;

  constructor(private readonly maxLineLength: number, private readonly newline: RegExp) {}

  /** Adds text; returns the complete lines now available, or null. */
  append(text: string, time: number): Lines | null {
    const hadPartial = this.partial !== '';
    const start = hadPartial ? this.partialTime : time;
    const all = (this.partial + text).replace(this.newline, '\n');
    const max = Math.max(2, this.maxLineLength);
    const lines: string[] = [];
    let from = 0;
    for (;;) {
      const nl = all.indexOf('\n', from);
      const end = nl < 0 ? all.length : nl;
      // Lines of max_line_length or more characters become several lines, nothing lost.
      while (end - from >= max) {
        lines.push(`${all.slice(from, from + max - 1)}\n`);
        from += max - 1;
      }
      if (nl < 0) break;
      lines.push(all.slice(from, nl + 1));
      from = nl + 1;
    }
    this.partial = all.slice(from);
    if (lines.length === 0) {
      if (!hadPartial) this.partialTime = time;
      return null;
    }
    this.partialTime = time;
    const offsets: number[] = [];
    let pos = -1;
    for (const l of lines) { pos += l.length; offsets.push(pos); }
    const times = lines.map((_, i) => (i === 0 ? start : time));
    return [lines.join(''), offsets, times];
  }

  /** The unfinished last line, completed with "\n", or null. */
  flush(): Lines | null {
    return this.partial === '' ? null : this.append('\n', this.partialTime);
  }
}

const LOG_KEYS = new Set(['stdout', 'stderr', 'header']);

function weight(key: string, value: unknown): number {
  const lines = key === 'log' ? (value as [string, Lines])[1] : LOG_KEYS.has(key) ? (value as Lines) : null;
  return lines ? lines[0].length + 8 * (lines[1].length + lines[2].length) : 20;
}

/**
 * Batches updates into one `update` message of at most `size` bytes (estimated as the stock
 * worker does), merging consecutive text of the same stream; sends after `delayMs` or when full.
 */
export class UpdateBuffer {
  private pending: UpdatePair[] = [];
  private bytes = 0;
  private timer: NodeJS.Timeout | undefined;

  constructor(private readonly send: (updates: UpdatePair[]) => void, private size: number, private delayMs: number) {}

  configure(size: number, delayMs: number): void {
    this.size = Math.max(1024, size);
    this.delayMs = delayMs;
  }

  append(key: string, value: unknown): void {
    const w = weight(key, value);
    if (this.bytes + w > this.size) this.flush();
    if (w > this.size && (LOG_KEYS.has(key) || key === 'log')) {
      for (const part of splitLines(key, value, this.size)) this.send([part]);
      return;
    }
    const last = this.pending[this.pending.length - 1];
    if (last && last[0] === key && LOG_KEYS.has(key)) {
      last[1] = join(last[1] as Lines, value as Lines);
    } else if (last && key === 'log' && last[0] === 'log' && (last[1] as [string, Lines])[0] === (value as [string, Lines])[0]) {
      const [name, lines] = last[1] as [string, Lines];
      last[1] = [name, join(lines, (value as [string, Lines])[1])];
    } else {
      this.pending.push([key, value]);
    }
    this.bytes += w;
    this.timer ??= setTimeout(() => this.flush(), this.delayMs);
  }

  flush(): void {
    clearTimeout(this.timer);
    this.timer = undefined;
    if (this.pending.length === 0) return;
    const updates = this.pending;
    this.pending = [];
    this.bytes = 0;
    this.send(updates);
  }

  /** Drops what is pending (the command is gone). */
  discard(): void {
    clearTimeout(this.timer);
    this.timer = undefined;
    this.pending = [];
    this.bytes = 0;
  }
}

function join(a: Lines, b: Lines): Lines {
  const base = a[0].length;
  return [a[0] + b[0], [...a[1], ...b[1].map((o) => o + base)], [...a[2], ...b[2]]];
}

/** Splits one large text update into parts of at most `size` (whole lines; a longer line alone). */
function splitLines(key: string, value: unknown, size: number): UpdatePair[] {
  const isLog = key === 'log';
  const [name, lines] = isLog ? (value as [string, Lines]) : ['', value as Lines];
  const parts: UpdatePair[] = [];
  let first = 0;
  let textStart = 0;
  while (first < lines[1].length) {
    let last = first;
    while (last + 1 < lines[1].length && lines[1][last + 1]! + 1 - textStart + 16 * (last + 2 - first) <= size) last++;
    const textEnd = lines[1][last]! + 1;
    const part: Lines = [lines[0].slice(textStart, textEnd), lines[1].slice(first, last + 1).map((o) => o - textStart), lines[2].slice(first, last + 1)];
    parts.push([key, isLog ? [name, part] : part]);
    first = last + 1;
    textStart = textEnd;
  }
  return parts;
}
