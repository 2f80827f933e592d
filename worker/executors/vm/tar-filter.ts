import { Duplex } from 'node:stream';
import { extract as tarExtract, pack as tarPack, type Extract, type ExtractEvents, type Header, type Pack } from 'tar-stream';
import { formatBytes } from '../step-support.js';

/**
 * Checks a tar stream coming out of the guest before the host's tar(1) unpacks it into the
 * workdir's staging directory. The guest is not trusted (a step runs as root in it and may
 * replace the agent's tools), so the archive is parsed by tar-stream (a kept, widely used
 * parser; GNU long names and pax headers are applied before any check, so no header can rename
 * an entry behind it) and written out again as a new archive holding only what a workdir may
 * hold: regular files, directories, symbolic links, and hard links to other entries. Dropped:
 * device nodes, FIFOs and any other type, names that are absolute or have a ".." component,
 * entries under a path that was a symbolic link earlier in the archive, hard links whose
 * target is any of those. Modes keep only the permission bits (no setuid, setgid or sticky);
 * owners become 0 (the host tar runs with --no-same-owner anyway). Fails when more than
 * `maxBytes` of file data arrive, on a malformed header, or when the stream does not end with
 * an end-of-archive block.
 */
type Source = ExtractEvents['entry'][1];
type HeaderArg = Parameters<Pack['entry']>[0];

export class TarFilter extends Duplex {
  /** Entries dropped, as "name (why)". */
  readonly dropped: string[] = [];
  private readonly ex: Extract;
  private readonly out: Pack;
  private total = 0;
  /** Zero bytes at the end of what arrived so far (an archive ends with at least two zero blocks). */
  private zeroTail = 0;
  /** Paths (normalized) that were symbolic links: nothing may be written through them. */
  private readonly symlinks = new Set<string>();
  private readonly seen = new Set<string>();
  private failed: Error | null = null;
  private extracted: Promise<void>;

  constructor(private readonly maxBytes = Number.POSITIVE_INFINITY) {
    super();
    this.ex = tarExtract();
    this.out = tarPack();
    this.out.on('data', (c: unknown) => { if (!this.push(c)) this.out.pause(); });
    this.out.on('end', () => this.push(null));
    this.out.on('error', (e: Error) => this.fail(e));
    this.ex.on('entry', (header, body, next) => {
      this.entry(header, body).then(() => next(), (e: Error) => next(e));
    });
    this.extracted = new Promise((resolve, reject) => {
      this.ex.on('finish', () => resolve());
      this.ex.on('error', (e: Error) => reject(e));
      this.ex.on('close', () => resolve());
    });
    this.extracted.catch((e: Error) => this.fail(e));
  }

  override _write(chunk: Buffer, _enc: BufferEncoding, cb: (e?: Error | null) => void): void {
    if (this.failed) return cb(this.failed);
    let i = chunk.length;
    while (i > 0 && chunk[i - 1] === 0) i--;
    this.zeroTail = i === 0 ? this.zeroTail + chunk.length : chunk.length - i;
    if (this.ex.write(chunk)) return cb();
    // Settle on drain, or when the parser stops (an error destroys it and no drain comes).
    const done = (): void => {
      this.ex.off('drain', done);
      this.ex.off('close', done);
      cb(this.failed ?? (this.ex.destroyed ? new Error('the archive from the VM is malformed (the parser stopped)') : null));
    };
    this.ex.on('drain', done);
    this.ex.on('close', done);
  }

  override _final(cb: (e?: Error | null) => void): void {
    if (this.failed) return cb(this.failed);
    if (this.zeroTail < 1024) {
      const e = new Error('the archive from the VM ended early (no end-of-archive block)');
      this.fail(e);
      return cb(e);
    }
    this.ex.end(undefined);
    this.extracted.then(() => {
      if (this.failed) return cb(this.failed);
      this.out.finalize();
      cb();
    }, (e: Error) => cb(this.describe(e)));
  }

  override _read(): void {
    this.out.resume();
  }

  override _destroy(err: Error | null, cb: (e: Error | null) => void): void {
    this.ex.destroy();
    this.out.destroy();
    cb(err);
  }

  private fail(e: Error): void {
    if (this.failed) return;
    this.failed = this.describe(e);
    this.destroy(this.failed);
  }

  private describe(e: Error): Error {
    if (/^the (archive|workdir)/.test(e.message)) return e;
    return new Error(`the archive from the VM is malformed (${e.message})`);
  }

  private async entry(h: Header, body: Source): Promise<void> {
    // tar-stream decodes a size field it cannot read (a base-256 field not led by 0x80/0xff,
    // e.g. "\xc2\x80\0…") as null and then waits for a body that never ends: every entry
    // must declare a size we can count, or the archive is refused at once.
    // The parser destroys the entry's body with its own error when it fails; that error
    // reaches us through the parser, so the body's copy needs no listener of its own.
    body.on('error', () => {});
    const size = h.size;
    if (typeof size !== 'number' || !Number.isSafeInteger(size) || size < 0) {
      throw new Error(`the archive from the VM is malformed (entry "${h.name.slice(0, 100)}" has an unreadable size field)`);
    }
    // tar-stream never ends the body of a directory (or link, or other non-file) entry that
    // declares a size: copy-out would wait forever. GNU tar writes 0 there; refuse the rest.
    const hasBody = h.type === 'file' || h.type === 'contiguous-file';
    if (!hasBody && size !== 0) {
      throw new Error(`the archive from the VM is malformed (entry "${h.name.slice(0, 100)}" of type ${h.type ?? 'unknown'} declares ${size} bytes of content)`);
    }
    this.total += size;
    if (this.total > this.maxBytes) {
      const e = new Error(`the workdir in the VM holds more than the disk limit of ${formatBytes(this.maxBytes)}`);
      this.fail(e);
      throw e;
    }
    const name = normalize(h.name);
    const why = this.reject(h, name);
    if (why) {
      this.dropped.push(`${h.name} (${why})`);
      body.resume();
      await ended(body);
      return;
    }
    const type = h.type === 'contiguous-file' ? 'file' : h.type;
    const isDir = type === 'directory';
    const mode = ((h.mode ?? 0o644) & 0o777) | (isDir ? 0o700 : 0);
    const header: HeaderArg = {
      name: name === '' ? '.' : isDir ? `${name}/` : name, type, mode, uid: 0, gid: 0, mtime: h.mtime ?? new Date(0),
      ...(type === 'file' ? { size } : { size: 0 }),
      ...(type === 'symlink' || type === 'link' ? { linkname: type === 'link' ? normalize(h.linkname ?? '') : (h.linkname ?? '') } : {}),
    };
    if (type === 'symlink') this.symlinks.add(name);
    this.seen.add(name);
    await new Promise<void>((resolve, reject) => {
      const sink = this.out.entry(header, (e) => (e ? reject(e) : resolve()));
      if (type === 'file') {
        body.on('error', reject);
        body.pipe(sink);
      } else {
        body.resume();
        sink.end(undefined);
      }
    });
  }

  private reject(h: Header, name: string): string | null {
    const type = h.type;
    if (type !== 'file' && type !== 'contiguous-file' && type !== 'directory' && type !== 'symlink' && type !== 'link') {
      return `entry type "${type ?? 'unknown'}" is not allowed in a workdir`;
    }
    if (unsafePath(h.name)) return 'absolute or ".." path';
    if (name === '' && type !== 'directory') return 'no name';
    if (this.underSymlink(name)) return 'under a symbolic link';
    if (this.symlinks.has(name)) return 'replaces a symbolic link';
    if (type === 'link') {
      const target = h.linkname ?? '';
      if (unsafePath(target) || normalize(target) === '') return 'hard link leaving the workdir';
      const t = normalize(target);
      if (this.underSymlink(t) || this.symlinks.has(t) || !this.seen.has(t)) return 'hard link to no earlier file of the archive';
    }
    return null;
  }

  private underSymlink(name: string): boolean {
    const parts = name.split('/');
    for (let i = 1; i < parts.length; i++) if (this.symlinks.has(parts.slice(0, i).join('/'))) return true;
    return false;
  }
}

/** "./a//b/" → "a/b"; "./" → "". */
function normalize(p: string): string {
  return p.split('/').filter((s) => s !== '' && s !== '.').join('/');
}

function unsafePath(p: string): boolean {
  return p.startsWith('/') || p.split('/').includes('..') || p.includes('\0');
}

function ended(s: Source): Promise<void> {
  return new Promise((resolve) => {
    s.once('end', resolve);
    s.once('close', resolve);
    s.once('error', () => resolve());
  });
}
