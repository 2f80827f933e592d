import { formatBytes } from '../step-support.js';
import { Transform, type TransformCallback } from 'node:stream';

/**
 * Checks a tar stream coming out of the guest before the host's tar(1) unpacks it into the
 * workdir. The guest is not trusted (a step runs as root in it and may replace the agent's
 * tools), so entries that have no business in a workdir are dropped: device nodes, fifos,
 * anything with an absolute name or a ".." component, hard links leaving the archive. Stops
 * at the end-of-archive block and ignores what follows; fails on a malformed header or when
 * more than `maxBytes` of file data arrive.
 */
export class TarFilter extends Transform {
  /** Entries dropped, as "name (why)". */
  readonly dropped: string[] = [];
  private buf: Buffer = Buffer.alloc(0);
  private pendingMeta: Buffer[] = [];
  private longName: string | null = null;
  private longLink: string | null = null;
  /** Bytes of the current entry's body still to pass (or skip), padded to 512. */
  private bodyLeft = 0;
  private passBody = true;
  /** The body of a GNU long-name/link header is collected, then interpreted. */
  private metaKind: 'L' | 'K' | null = null;
  private metaBody: Buffer[] = [];
  private metaSize = 0;
  private ended = false;
  private total = 0;

  constructor(private readonly maxBytes = Number.POSITIVE_INFINITY) {
    super();
  }

  override _transform(chunk: Buffer, _enc: BufferEncoding, cb: TransformCallback): void {
    if (this.ended) return cb();
    this.buf = this.buf.length ? Buffer.concat([this.buf, chunk]) : chunk;
    try {
      this.consume();
      cb();
    } catch (e) {
      cb(e as Error);
    }
  }

  override _flush(cb: TransformCallback): void {
    if (!this.ended) return cb(new Error('the archive from the VM ended early (no end-of-archive block)'));
    cb();
  }

  private consume(): void {
    while (!this.ended) {
      if (this.bodyLeft > 0) {
        if (this.buf.length === 0) return;
        const n = Math.min(this.bodyLeft, this.buf.length);
        const part = this.buf.subarray(0, n);
        if (this.metaKind) this.metaBody.push(part);
        else if (this.passBody) this.push(part);
        this.buf = this.buf.subarray(n);
        this.bodyLeft -= n;
        if (this.bodyLeft === 0 && this.metaKind) this.finishMeta();
        continue;
      }
      if (this.buf.length < 512) return;
      const header = this.buf.subarray(0, 512);
      this.buf = this.buf.subarray(512);
      this.header(Buffer.from(header));
    }
  }

  private header(h: Buffer): void {
    if (h.every((b) => b === 0)) {
      this.ended = true;
      this.push(Buffer.alloc(1024));
      return;
    }
    let sum = 0;
    for (let i = 0; i < 512; i++) sum += i >= 148 && i < 156 ? 32 : h[i]!;
    if (sum !== parseOctal(h.subarray(148, 156))) throw new Error('the archive from the VM has a malformed header (bad checksum)');
    const size = parseSize(h.subarray(124, 136));
    const padded = Math.ceil(size / 512) * 512;
    const type = String.fromCharCode(h[156]!);
    this.total += size;
    if (this.total > this.maxBytes) throw new Error(`the workdir in the VM holds more than the disk limit of ${formatBytes(this.maxBytes)}`);
    if (type === 'L' || type === 'K') {
      if (size > 64 * 1024) throw new Error('the archive from the VM has an over-long file name');
      this.pendingMeta.push(h);
      this.metaKind = type;
      this.metaBody = [];
      this.metaSize = padded;
      this.bodyLeft = padded;
      if (padded === 0) this.finishMeta();
      return;
    }
    if (type === 'x' || type === 'g') {
      // pax headers could rename the entry behind our back: busybox tar does not write them.
      this.dropped.push(`pax header (not supported)`);
      this.bodyLeft = padded;
      this.passBody = false;
      return;
    }
    const prefix = cstr(h.subarray(345, 500));
    const name = this.longName ?? (prefix ? `${prefix}/${cstr(h.subarray(0, 100))}` : cstr(h.subarray(0, 100)));
    const link = this.longLink ?? cstr(h.subarray(157, 257));
    const why = reject(type, name, link);
    const meta = this.pendingMeta;
    this.pendingMeta = [];
    this.longName = null;
    this.longLink = null;
    this.passBody = why === null;
    this.bodyLeft = type === '0' || type === '\0' || type === '7' ? padded : 0;
    if (why) {
      this.dropped.push(`${name} (${why})`);
      return;
    }
    for (const m of meta) this.push(m);
    this.push(h);
  }

  private finishMeta(): void {
    const body = Buffer.concat(this.metaBody);
    const value = cstr(body);
    if (this.metaKind === 'L') this.longName = value;
    else this.longLink = value;
    // Re-emitted in front of the entry they belong to, if it is kept.
    this.pendingMeta.push(body.subarray(0, this.metaSize));
    this.metaKind = null;
    this.metaBody = [];
  }
}

function reject(type: string, name: string, link: string): string | null {
  if (!['0', '\0', '7', '5', '2', '1'].includes(type)) return `entry type "${type}" is not allowed in a workdir`;
  if (unsafePath(name)) return 'absolute or ".." path';
  if (type === '1' && unsafePath(link)) return 'hard link leaving the workdir';
  return null;
}

function unsafePath(p: string): boolean {
  return p.startsWith('/') || p.split('/').includes('..');
}

function cstr(b: Buffer): string {
  const end = b.indexOf(0);
  return b.subarray(0, end < 0 ? b.length : end).toString('utf8');
}

function parseOctal(b: Buffer): number {
  const s = cstr(b).trim();
  return s ? parseInt(s, 8) : 0;
}

/** Octal, or GNU base-256 for large sizes. */
function parseSize(b: Buffer): number {
  if ((b[0]! & 0x80) !== 0) {
    let n = 0;
    for (let i = 1; i < b.length; i++) n = n * 256 + b[i]!;
    return n;
  }
  return parseOctal(b);
}
