import { spawn } from 'node:child_process';
import { closeSync, constants, createReadStream, existsSync, fchmodSync, fstatSync, writeSync } from 'node:fs';
import { chmod, mkdir, open, stat, type FileHandle } from 'node:fs/promises';
import { dirname } from 'node:path';
import { Readable } from 'node:stream';
import { createGzip } from 'node:zlib';
import { arg, type CommandContext, type CommandEnv, type CommandSpec } from './command.js';
import { openBeneath } from './safe-fs.js';
import { tarDirectory } from './tar.js';

/**
 * upload_file, upload_directory, download_file — buildbot_worker/commands/transfer.py. Data
 * goes in `update_upload_*_write` / `update_read_file` requests, one block at a time, each
 * acknowledged before the next, and `rc` (with `stderr` on failure) at the end.
 *
 * BuildBot 3.7's master answers every `update_read_file` with nil (manager/msgpack.py reads the
 * data and drops it), so downloads arrive empty; nil means end of file here, exactly as in
 * the stock worker. Its `update_upload_file_utime` (keepstamp) always fails; that failure
 * completes the command with the error, as the stock worker does (the step: EXCEPTION).
 *
 * WHERE THEY RUN: on the host, reading and writing files the master names in directories the
 * build's container can write. Why that is safe (container executor): the whole transfer runs
 * in env.quiesce() (the builder's container frozen: nothing can swap a path meanwhile); an
 * upload reads the path's real target only if it lies in its builder directory, opened through
 * descriptors that follow no symlink (safe-fs.ts); a download creates its directories and file
 * the same way, so a symlink anywhere on the way fails the download instead of writing outside.
 * Sizes from the master are bounded: `blocksize` to 1..16 MiB per request, `maxsize` ≥ 0.
 */

/** The largest block one update_* request carries, whatever `blocksize` the master asks. */
const MAX_BLOCK = 16 * 1024 * 1024;

/** `blocksize` as a usable block length; a clear error for 0, negatives, NaN or non-integers. */
function blockSize(v: number, command: string): number {
  if (!Number.isFinite(v) || v < 1 || !Number.isInteger(v)) throw new Error(`${command}: args.blocksize must be a positive integer, got ${v}`);
  return Math.min(v, MAX_BLOCK);
}

/** `maxsize`: null (no limit) or a non-negative number. */
function maxSize(v: number | null, command: string): number | null {
  if (v === null) return null;
  if (Number.isNaN(v) || v < 0) throw new Error(`${command}: args.maxsize must be null or a non-negative number, got ${v}`);
  return v;
}

type Source = AsyncIterable<Buffer>;

/** Reads `source` in blocks of at most `blocksize` and hands each to `write`; returns false when maxsize cut it short. */
async function sendBlocks(ctx: CommandContext, source: Source, blocksize: number, maxsize: number | null, write: (b: Buffer) => Promise<unknown>): Promise<boolean> {
  let pending: Buffer = Buffer.alloc(0);
  let remaining = maxsize;
  const flush = async (final: boolean): Promise<boolean> => {
    while (pending.length >= blocksize || (final && pending.length > 0)) {
      if (ctx.interrupted) return true;
      if (remaining !== null && remaining <= 0) return false;
      const n = Math.min(blocksize, pending.length, remaining ?? Infinity);
      await write(pending.subarray(0, n));
      pending = pending.subarray(n);
      if (remaining !== null) remaining -= n;
    }
    return true;
  };
  for await (const chunk of source) {
    pending = pending.length ? Buffer.concat([pending, chunk]) : chunk;
    if (!(await flush(false))) return false;
    if (ctx.interrupted) return true;
  }
  return flush(true);
}

function finish(ctx: CommandContext, rc: number, stderr: string | null): void {
  ctx.update(stderr ? [['rc', rc], ['stderr', stderr]] : [['rc', rc]]);
}

const uploadFile: CommandSpec = {
  required: ['path', 'blocksize'],
  async run(ctx, args, env) {
    const path = arg(args, 'path', 'string', 'upload_file')!;
    const blocksize = blockSize(arg(args, 'blocksize', 'number', 'upload_file')!, 'upload_file');
    const maxsize = maxSize(arg(args, 'maxsize', 'number', 'upload_file'), 'upload_file');
    const keepstamp = arg(args, 'keepstamp', 'boolean', 'upload_file') ?? false;
    await env.quiesce(path, async () => {
      let file: FileHandle | number | null = null;
      let times: [number, number] | null = null;
      try {
        if (env.paths.confined) {
          const real = await env.paths.resolveInside(path, 'upload_file');
          file = openBeneath(await env.paths.realBasedir(), real, constants.O_RDONLY | constants.O_NONBLOCK);
          const s = fstatSync(file);
          if (!s.isFile()) throw new Error('not a regular file');
          times = keepstamp ? [s.atimeMs / 1000, s.mtimeMs / 1000] : null;
        } else {
          if (keepstamp) { const s = await stat(path); times = [s.atimeMs / 1000, s.mtimeMs / 1000]; }
          file = await open(path, 'r');
          if ((await file.stat()).isDirectory()) throw new Error('a directory');
        }
      } catch {
        if (typeof file === 'number') closeSync(file); else await file?.close().catch(() => {});
        file = null;
      }
      await sendFile(ctx, path, file, blocksize, maxsize, times);
    });
  },
};

async function sendFile(ctx: CommandContext, path: string, handle: FileHandle | number | null, blocksize: number, maxsize: number | null, times: [number, number] | null): Promise<void> {
  {
    const file = handle === null ? null : typeof handle === 'number'
      ? { createReadStream: () => createReadStream('', { fd: handle, autoClose: false }), close: async () => closeSync(handle) }
      : handle;
    ctx.status([['header', `sending ${path}\n`]]);
    if (!file) {
      // Unlike the stock worker we do not "close" the master's file: the master then removes
      // its temporary file instead of leaving an empty one at the destination.
      finish(ctx, 1, `Cannot open file '${path}' for upload`);
      return;
    }
    let ok: boolean;
    try {
      ok = await sendBlocks(ctx, file.createReadStream({ autoClose: false }) as AsyncIterable<Buffer>, blocksize, maxsize, (b) => ctx.call('update_upload_file_write', { args: b }));
    } catch (e) {
      await file.close().catch(() => {});
      await ctx.call('update_upload_file_close').catch(() => {});
      finish(ctx, 1, null);
      throw e;
    }
    await file.close();
    const rc = ctx.interrupted || !ok ? 1 : 0;
    try {
      await ctx.call('update_upload_file_close');
      if (times) await ctx.call('update_upload_file_utime', { access_time: times[0], modified_time: times[1] });
    } finally {
      finish(ctx, rc, ok ? null : `Maximum filesize reached, truncating file '${path}'`);
    }
  }
}

function compressed(tar: Source, compress: string | null): Source {
  if (compress === 'gz') return Readable.from(tar).pipe(createGzip());
  if (compress === 'bz2') {
    const bz = spawn('bzip2', ['-c'], { stdio: ['pipe', 'pipe', 'inherit'] });
    bz.on('error', (e) => bz.stdout.destroy(new Error(`compress=bz2 needs the bzip2 program: ${e.message}`)));
    Readable.from(tar).on('error', (e) => bz.stdout.destroy(e)).pipe(bz.stdin);
    return bz.stdout;
  }
  if (compress !== null) throw new Error(`upload_directory: compress must be null, "gz" or "bz2", got "${compress}"`);
  return tar;
}

const uploadDirectory: CommandSpec = {
  required: ['path', 'blocksize'],
  async run(ctx, args, env) {
    const path = arg(args, 'path', 'string', 'upload_directory')!;
    const blocksize = blockSize(arg(args, 'blocksize', 'number', 'upload_directory')!, 'upload_directory');
    const maxsize = maxSize(arg(args, 'maxsize', 'number', 'upload_directory'), 'upload_directory');
    const compress = arg(args, 'compress', 'string', 'upload_directory');
    await env.quiesce(path, () => uploadTree(ctx, env, path, blocksize, maxsize, compress));
  },
};

async function uploadTree(ctx: CommandContext, env: CommandEnv, path: string, blocksize: number, maxsize: number | null, compress: string | null): Promise<void> {
  {
    await env.paths.check(path, 'upload_directory');
    if (!existsSync(path)) throw new Error(`[Errno 2] No such file or directory: '${path}'`);
    ctx.status([['header', `sending ${path}\n`]]);
    let ok = true;
    try {
      ok = await sendBlocks(ctx, compressed(tarDirectory(path), compress), blocksize, maxsize, (b) => ctx.call('update_upload_directory_write', { args: b }));
      await ctx.call('update_upload_directory_unpack');
    } catch (e) {
      finish(ctx, 1, null);
      throw e;
    }
    finish(ctx, ctx.interrupted || !ok ? 1 : 0, ok ? null : `Maximum filesize reached, truncating file '${path}'`);
  }
}

const downloadFile: CommandSpec = {
  required: ['path', 'blocksize'],
  async run(ctx, args, env) {
    const path = arg(args, 'path', 'string', 'download_file')!;
    const blocksize = blockSize(arg(args, 'blocksize', 'number', 'download_file')!, 'download_file');
    const remaining = maxSize(arg(args, 'maxsize', 'number', 'download_file'), 'download_file');
    const mode = arg(args, 'mode', 'number', 'download_file');
    if (mode !== null && (!Number.isInteger(mode) || mode < 0 || mode > 0o7777)) throw new Error(`download_file: args.mode must be a file mode (0 to 0o7777), got ${mode}`);
    await env.quiesce(path, () => receiveFile(ctx, env, path, blocksize, remaining, mode));
  },
};

async function receiveFile(ctx: CommandContext, env: CommandEnv, path: string, blocksize: number, maxsize: number | null, mode: number | null): Promise<void> {
  {
    let remaining = maxsize;
    await env.paths.check(path, 'download_file');
    let file: { write: (b: Uint8Array) => Promise<unknown>; close: () => Promise<void> } | null = null;
    let stderr: string | null = null;
    let rc = 0;
    try {
      if (env.paths.confined) {
        // Directories and the file created through descriptors: a symlink anywhere fails the open.
        const fd = openBeneath(env.paths.basedir, path, constants.O_WRONLY | constants.O_CREAT | constants.O_TRUNC, { mode: 0o666, mkdirs: true });
        file = { write: async (b) => writeSync(fd, b), close: async () => closeSync(fd) };
        if (mode !== null) fchmodSync(fd, mode);
      } else {
        if (!existsSync(dirname(path))) await mkdir(dirname(path), { recursive: true });
        const h = await open(path, constants.O_WRONLY | constants.O_CREAT | constants.O_TRUNC, 0o666);
        file = { write: (b) => h.write(b), close: () => h.close() };
        if (mode !== null) await chmod(path, mode);
      }
    } catch {
      await file?.close();
      file = null;
      stderr = `Cannot open file '${path}' for download`;
      rc = 1;
    }
    try {
      while (file && !ctx.interrupted) {
        const length = remaining === null ? blocksize : Math.min(blocksize, Math.floor(remaining));
        if (length <= 0) { stderr = `Maximum filesize reached, truncating file '${path}'`; rc = 1; break; }
        const data = await ctx.call('update_read_file', { length });
        const got = typeof data === 'string' ? Buffer.from(data) : data instanceof Uint8Array ? data : null;
        // Never more than asked for: maxsize holds whatever the master sends.
        const bytes = got && got.length > length ? got.subarray(0, length) : got;
        if (!bytes || bytes.length === 0) break;
        await file.write(bytes);
        if (remaining !== null) remaining -= bytes.length;
      }
    } finally {
      await ctx.call('update_read_file_close').catch((e: unknown) => env.log(`buildbot: closing the master's reader failed: ${String(e)}`));
      await file?.close();
      if (ctx.interrupted) rc = 1;
      finish(ctx, rc, stderr);
    }
  }
}

export const TRANSFER_COMMANDS: Record<string, CommandSpec> = {
  upload_file: uploadFile, uploadFile, upload_directory: uploadDirectory, uploadDirectory,
  download_file: downloadFile, downloadFile,
};
