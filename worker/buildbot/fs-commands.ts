import { existsSync } from 'node:fs';
import { mkdir, readdir, stat, unlink } from 'node:fs/promises';
import { dirname } from 'node:path';
import { arg, strings, type Args, type CommandContext, type CommandEnv, type CommandSpec } from './command.js';
import { pyGlob } from './pyglob.js';
import { osError } from './pyfmt.js';
import { runProcess } from './run-process.js';
import { mkdirBeneath, unlinkBeneath } from './safe-fs.js';

/**
 * mkdir, rmdir, cpdir, stat, glob, listdir, rmfile — buildbot_worker/commands/fs.py. rmdir and
 * cpdir run `rm -rf` and `cp -R -P -p -v` on the host like the stock worker, so their logs
 * show the same command headers.
 *
 * WHERE THEY RUN: on the host, on paths the master names, in directories the build's
 * container can write. Why that is safe (container executor): each runs inside
 * env.quiesce(), which keeps that builder's container frozen, so no process of the build can
 * swap a path between the check (paths.ts: inside the basedir and, symlinks resolved, inside
 * its builder directory) and the use; mkdir and rmfile also walk the path by descriptor
 * without following any symlink (safe-fs.ts); rm -rf and cp -P do not follow symlinks.
 */

function fail(ctx: CommandContext, header: string, path: string, e: unknown): void {
  const { errno, strerror } = osError(e);
  ctx.status([['header', `${header}: ${strerror}: ${path}`], ['rc', errno]]);
}

const mkdirCommand: CommandSpec = {
  required: ['paths'],
  async run(ctx, args, env) {
    for (const path of strings(args, 'paths', 'mkdir')) {
      try {
        await env.quiesce(path, async () => {
          await env.paths.check(path, 'mkdir');
          if (env.paths.confined) mkdirBeneath(env.paths.basedir, path);
          else if (!(await stat(path).catch(() => null))?.isDirectory()) await mkdir(path, { recursive: true });
        });
      } catch (e) {
        fail(ctx, 'mkdir', path, e);
        return;
      }
    }
    ctx.status([['rc', 0]]);
  },
};

/** A helper process (rm, chmod, cp) in the basedir, headers and all, without its own rc update. */
function helper(ctx: CommandContext, env: CommandEnv, args: Args, command: string[], name: string): Promise<number> {
  return runProcess(ctx, {
    command, workdir: env.paths.basedir, sendRC: false, usePTY: false,
    timeout: arg(args, 'timeout', 'number', name) ?? 120, maxTime: arg(args, 'maxTime', 'number', name),
    logEnviron: arg(args, 'logEnviron', 'boolean', name) ?? true,
    launcher: env.utility, paths: env.paths, freezer: env.freezer,
  });
}

const rmdirCommand: CommandSpec = {
  required: ['paths'],
  async run(ctx, args, env) {
    let rc = 0;
    for (const path of strings(args, 'paths', 'rmdir')) {
      const r = await env.quiesce(path, async () => {
        await env.paths.check(path, 'rmdir');
        let r = await helper(ctx, env, args, ['rm', '-rf', path], 'rmdir');
        // A subdirectory without write permission stops rm: make it writable and retry once
        // (chmod -R does not follow symlinks below the top; the top was checked to be inside).
        if (r !== 0) {
          await helper(ctx, env, args, ['chmod', '-Rf', 'u+rwx', path], 'rmdir');
          r = await helper(ctx, env, args, ['rm', '-rf', path], 'rmdir');
        }
        return r;
      });
      if (r !== 0) rc = r;
    }
    ctx.status([['rc', rc]]);
  },
};

const cpdirCommand: CommandSpec = {
  required: ['from_path', 'to_path'],
  async run(ctx, args, env) {
    const fromArg = arg(args, 'from_path', 'string', 'cpdir') ?? '';
    const toArg = arg(args, 'to_path', 'string', 'cpdir') ?? '';
    const copy = async (): Promise<number> => {
      const from = await env.paths.check(fromArg, 'cpdir source');
      const to = await env.paths.check(toArg, 'cpdir destination');
      if (env.paths.confined) mkdirBeneath(env.paths.basedir, dirname(to));
      else if (!existsSync(dirname(to))) await mkdir(dirname(to), { recursive: true });
      return helper(ctx, env, args, ['cp', '-R', '-P', '-p', '-v', from, to], 'cpdir');
    };
    // Both builder directories held, in a fixed order (so two cpdirs cannot wait on each
    // other), and one directory only once: holds on one directory run one after the other, so
    // holding it again inside its own hold would wait for ever (a copy within one builder).
    const dirOf = (p: string): string => { try { return env.paths.builderDir(p) ?? p; } catch { return p; } };
    const [first, second] = [fromArg, toArg].sort((a, b) => (dirOf(a) < dirOf(b) ? -1 : dirOf(a) > dirOf(b) ? 1 : 0));
    const rc = dirOf(fromArg) === dirOf(toArg) ? await env.quiesce(fromArg, copy) : await env.quiesce(first!, () => env.quiesce(second!, copy));
    ctx.status([['rc', rc]]);
  },
};

const statCommand: CommandSpec = {
  required: ['path'],
  async run(ctx, args, env) {
    const path = arg(args, 'path', 'string', 'stat') ?? '';
    try {
      const s = await env.quiesce(path, async () => { await env.paths.check(path, 'stat'); return stat(path, { bigint: true }); });
      const n = (v: bigint): number | bigint => (v <= BigInt(Number.MAX_SAFE_INTEGER) ? Number(v) : v);
      const sec = (ns: bigint): number => Number(ns / 1_000_000_000n);
      ctx.status([['stat', [n(s.mode), n(s.ino), n(s.dev), n(s.nlink), n(s.uid), n(s.gid), n(s.size),
        sec(s.atimeNs), sec(s.mtimeNs), sec(s.ctimeNs)]], ['rc', 0]]);
    } catch (e) {
      fail(ctx, 'stat', path, e);
    }
  },
};

const globCommand: CommandSpec = {
  required: ['path'],
  async run(ctx, args, env) {
    const pattern = arg(args, 'path', 'string', 'glob') ?? '';
    const files: string[] = [];
    await env.quiesce(pattern, async () => {
      for (const f of await pyGlob(pattern, !env.paths.confined)) {
        if (await env.paths.check(f, 'glob result').then(() => true, () => false)) files.push(f);
      }
    });
    ctx.status([['files', files], ['rc', 0]]);
  },
};

const listdirCommand: CommandSpec = {
  required: ['path'],
  async run(ctx, args, env) {
    const path = arg(args, 'path', 'string', 'listdir') ?? '';
    try {
      const files = await env.quiesce(path, async () => { await env.paths.check(path, 'listdir'); return readdir(path); });
      ctx.status([['files', files], ['rc', 0]]);
    } catch (e) {
      fail(ctx, 'listdir', path, e);
    }
  },
};

const rmfileCommand: CommandSpec = {
  required: ['path'],
  async run(ctx, args, env) {
    const path = arg(args, 'path', 'string', 'rmfile') ?? '';
    try {
      await env.quiesce(path, async () => {
        await env.paths.check(dirname(path), 'rmfile');
        if (env.paths.confined) unlinkBeneath(env.paths.basedir, path);
        else await unlink(path);
      });
      ctx.status([['rc', 0]]);
    } catch (e) {
      fail(ctx, 'rmfile', path, e);
    }
  },
};

export const FS_COMMANDS: Record<string, CommandSpec> = {
  mkdir: mkdirCommand, rmdir: rmdirCommand, cpdir: cpdirCommand, stat: statCommand,
  glob: globCommand, listdir: listdirCommand, rmfile: rmfileCommand,
};
