import { existsSync, lstatSync, mkdirSync, readdirSync, renameSync, rmSync } from 'node:fs';
import { join } from 'node:path';

/**
 * A build's own directory, `WORK/b<id>-a<attempt>` with an empty `src` inside, and its
 * removal once the master heard the end (runner.ts).
 *
 * Where the executor says so (`Executor.keepsBuildDirs`, the host executor only), a build that
 * left both directories empty gives them to the next build instead of removing them: they are
 * renamed to `WORK/.spare-N` and renamed into place for the next build. A rename allocates no
 * inode. Making and removing two directories per build did: on ext4 without a journal, each
 * new inode is found by walking every inode freed in the last minute (`recently_deleted` in
 * fs/ext4/ialloc.c), and at 250 short builds a second that walk was about half of the
 * worker's CPU time (bench/README.md, "The short build's directories").
 *
 * Why this is safe. The paths are the agent's own: a master's message gives only the build's
 * numbers, which its schema bounds to integers. Only the host executor's directories are kept,
 * and its steps already run as this worker's user with nothing between (it is for a
 * developer's own builds): nothing a build there could do to a kept directory is more than it
 * could do anyway. A kept pair is checked when it is given back and when it is taken — the
 * outer directory holds only `src`, `src` is a real directory (not a symlink) and empty —
 * and anything else is removed as before. A container's or a VM's build gets fresh
 * directories every time: there a step could change a directory in ways this check does not
 * see (a default ACL, an owner inside the user namespace), so a sandbox never passes anything
 * to the next build.
 */

const MAX_SPARES = 8;

/** Per work root: the spare pairs that are ready, and a counter for their names. */
const roots = new Map<string, { spares: string[]; next: number }>();

function sparesOf(workRoot: string): { spares: string[]; next: number } {
  let r = roots.get(workRoot);
  if (!r) roots.set(workRoot, r = { spares: [], next: 0 });
  return r;
}

/** True when `dir` holds only `src`, a real empty directory. False when anything else is there (or nothing). */
function emptyPair(dir: string): boolean {
  try {
    const entries = readdirSync(dir);
    if (entries.length !== 1 || entries[0] !== 'src') return false;
    const src = join(dir, 'src');
    return lstatSync(src).isDirectory() && readdirSync(src).length === 0;
  } catch {
    return false;
  }
}

/**
 * Makes `dir` (in `workRoot`) and `dir/src`, both empty: a spare pair renamed into place when
 * one is ready and `reuse` is set, else two new directories. True when `src` is there (false:
 * only `dir` was made — the caller makes `src`, e.g. inside a disk limit it mounts first).
 */
export function makeBuildDir(workRoot: string, dir: string, reuse: boolean, withSrc: boolean): boolean {
  if (reuse) {
    const r = sparesOf(workRoot);
    for (let spare = r.spares.pop(); spare !== undefined; spare = r.spares.pop()) {
      if (!emptyPair(spare)) {
        rmSync(spare, { recursive: true, force: true });
        continue;
      }
      try {
        renameSync(spare, dir);
        return true;
      } catch {
        rmSync(spare, { recursive: true, force: true });
      }
    }
  }
  mkdirSync(dir, { recursive: true });
  if (!withSrc) return false;
  mkdirSync(join(dir, 'src'));
  return true;
}

/**
 * Removes a build's directory and everything in it; with `reuse`, an empty pair is kept as a
 * spare instead (at most MAX_SPARES a work root). Throws as rmSync does.
 */
export function retireBuildDir(workRoot: string, dir: string, reuse: boolean): void {
  // Asked first: rmSync of a missing directory throws and catches an error inside (a stack trace a build).
  if (!existsSync(dir)) return;
  if (reuse) {
    const r = sparesOf(workRoot);
    if (r.spares.length < MAX_SPARES && emptyPair(dir)) {
      const spare = join(workRoot, `.spare-${r.next++}`);
      try {
        renameSync(dir, spare);
        r.spares.push(spare);
        return;
      } catch {
        // Not kept (the work root was emptied meanwhile, …): removed below.
      }
    }
  }
  rmSync(dir, { recursive: true, force: true });
}

/** Forgets the spares of `workRoot` (the agent empties it when it starts). */
export function forgetBuildDirs(workRoot: string): void {
  roots.delete(workRoot);
}
