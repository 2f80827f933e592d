import { spawn } from 'node:child_process';
import { constants, existsSync } from 'node:fs';
import { chmod, mkdir, open, stat, type FileHandle } from 'node:fs/promises';
import { dirname } from 'node:path';
import { Readable } from 'node:stream';
import { createGzip } from 'node:zlib';
import { arg, type CommandContext, type CommandSpec } from './command.js';
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
 */

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
    const blocksize = arg(args, 'blocksize', 'number', 'upload_file')!;
    const maxsize = arg(args, 'maxsize', 'number', 'upload_file');
    const keepstamp = arg(args, 'keepstamp', 'boolean', 'upload_file') ?? false;
    let file: FileHandle | null = null;
    let times: [number, number] | null = null;
    try {
      await env.paths.check(path, 'upload_file');
      if (keepstamp) { const s = await stat(path); times = [s.atimeMs / 1000, s.mtimeMs / 1000]; }
      file = await open(path, 'r');
      if ((await file.stat()).isDirectory()) throw new Error('a directory');
    } catch {
      await file?.close().catch(() => {});
      file = null;
    }
    ctx.status([['header', `sending ${path}\n`]]);
    if (!file) {
      // Unlike the stock worker we do not "close" the master's file: the master then removes
      // its temporary file instead of leaving an empty one at the destination.
      finish(ctx, 1, `Cannot open file '${path}' for upload`);
      return;
    }
    let ok: boolean;
    try {
      ok = await sendBlocks(ctx, file.createReadStream({ autoClose: false }), blocksize, maxsize, (b) => ctx.call('update_upload_file_write', { args: b }));
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
  },
};

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
    const blocksize = arg(args, 'blocksize', 'number', 'upload_directory')!;
    const maxsize = arg(args, 'maxsize', 'number', 'upload_directory');
    const compress = arg(args, 'compress', 'string', 'upload_directory');
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
  },
};

const downloadFile: CommandSpec = {
  required: ['path', 'blocksize'],
  async run(ctx, args, env) {
    const path = arg(args, 'path', 'string', 'download_file')!;
    const blocksize = arg(args, 'blocksize', 'number', 'download_file')!;
    let remaining = arg(args, 'maxsize', 'number', 'download_file');
    const mode = arg(args, 'mode', 'number', 'download_file');
    await env.paths.check(path, 'download_file');
    if (!existsSync(dirname(path))) await mkdir(dirname(path), { recursive: true });
    let file: FileHandle | null = null;
    let stderr: string | null = null;
    let rc = 0;
    try {
      // Confined: never follow a symlink the build left in place of the file.
      const flags = constants.O_WRONLY | constants.O_CREAT | constants.O_TRUNC | (env.paths.confined ? constants.O_NOFOLLOW : 0);
      file = await open(path, flags, 0o666);
      if (mode !== null) await chmod(path, mode);
    } catch {
      await file?.close();
      file = null;
      stderr = `Cannot open file '${path}' for download`;
      rc = 1;
    }
    try {
      while (file && !ctx.interrupted) {
        const length = remaining === null ? blocksize : Math.min(blocksize, remaining);
        if (length <= 0) { stderr = `Maximum filesize reached, truncating file '${path}'`; rc = 1; break; }
        const data = await ctx.call('update_read_file', { length });
        const bytes = typeof data === 'string' ? Buffer.from(data) : data instanceof Uint8Array ? data : null;
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
  },
};

export const TRANSFER_COMMANDS: Record<string, CommandSpec> = {
  upload_file: uploadFile, uploadFile, upload_directory: uploadDirectory, uploadDirectory,
  download_file: downloadFile, downloadFile,
};
