import { lstatSync, mkdirSync, readdirSync, renameSync, rmSync } from 'node:fs';
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
 * very directory the build was given (its inode), holding only `src`; both real directories
 * (lstat, not a symlink) of this user with the mode a new one gets; `src` empty — and
 * anything else is removed as before.
 *
 * Accepted on the host: a process that outlives its build in a session of its own (a daemon
 * the step's process group did not take with it) keeps the kept `src` as its working
 * directory, so what it writes there after the next build took the pair lands in that build
 * (the take checks only that the pair is empty then). Before, its writes to a removed
 * directory failed. The host executor does not contain such a process anyway: it can write
 * to the next build's directory by its path, as this user. Default ACLs are not checked
 * (Node has no getxattr); the same holds for them. A container's or a VM's build gets fresh
 * directories every time: there a step could change a directory in ways this check does not
 * see (a default ACL, an owner inside the user namespace), so a sandbox never passes anything
 * to the next build.
 */

const MAX_SPARES = 8;

/** Per work root: the spare pairs that are ready, a counter for their names, and the mode a new directory gets here. */
interface Root { spares: string[]; next: number; mode: number | null }
const roots = new Map<string, Root>();

function rootOf(workRoot: string): Root {
  let r = roots.get(workRoot);
  if (!r) roots.set(workRoot, r = { spares: [], next: 0, mode: null });
  return r;
}

/** A real directory of this user with the mode a new one gets here (a build's chmod, setgid or sticky bit is not passed on). */
function pristine(r: Root, path: string): boolean {
  const st = lstatSync(path, { throwIfNoEntry: false });
  return st !== undefined && st.isDirectory() && (st.mode & 0o7777) === r.mode && (process.getuid === undefined || st.uid === process.getuid());
}

/** True when `dir` is a pristine directory holding only `src`, a pristine empty directory. False when anything else is there (or nothing). */
function emptyPair(r: Root, dir: string): boolean {
  try {
    if (r.mode === null || !pristine(r, dir)) return false;
    const entries = readdirSync(dir);
    if (entries.length !== 1 || entries[0] !== 'src') return false;
    const src = join(dir, 'src');
    return pristine(r, src) && readdirSync(src).length === 0;
  } catch {
    return false;
  }
}

/** Whether anything is at `path`, a dangling symlink too (existsSync follows links). */
export function lexists(path: string): boolean {
  return lstatSync(path, { throwIfNoEntry: false }) !== undefined;
}

/**
 * Makes `dir` (in `workRoot`) and `dir/src`, both empty: a spare pair renamed into place when
 * one is ready and `reuse` is set, else two new directories. True when `src` is there (false:
 * only `dir` was made — the caller makes `src`, e.g. inside a disk limit it mounts first).
 */
export function makeBuildDir(workRoot: string, dir: string, reuse: boolean, withSrc: boolean): BuildDir {
  const r = rootOf(workRoot);
  // Only a pair is ever kept, so only a directory that wants `src` takes one.
  if (reuse && withSrc) {
    for (let spare = r.spares.pop(); spare !== undefined; spare = r.spares.pop()) {
      if (!emptyPair(r, spare)) {
        rmSync(spare, { recursive: true, force: true });
        continue;
      }
      try {
        renameSync(spare, dir);
        return { hasSrc: true, ino: lstatSync(dir).ino };
      } catch {
        rmSync(spare, { recursive: true, force: true });
      }
    }
  }
  mkdirSync(dir, { recursive: true });
  const st = lstatSync(dir);
  r.mode ??= st.mode & 0o7777;
  if (!withSrc) return { hasSrc: false, ino: st.ino };
  mkdirSync(join(dir, 'src'));
  return { hasSrc: true, ino: st.ino };
}

/** What makeBuildDir made: whether `src` is there, and the directory's inode (retireBuildDir keeps only that directory). */
export interface BuildDir { hasSrc: boolean; ino: number }

/**
 * Removes a build's directory and everything in it; given `keep` (what makeBuildDir made, on
 * an executor that keepsBuildDirs), an empty pair is kept as a spare instead (at most
 * MAX_SPARES a work root). Throws as rmSync does.
 */
export function retireBuildDir(workRoot: string, dir: string, keep?: BuildDir): void {
  // Asked first: rmSync of a missing directory throws and catches an error inside (a stack trace a build).
  if (!lexists(dir)) return;
  if (keep) {
    const r = rootOf(workRoot);
    // The very directory this build was given (not another run's of the same name, not a symlink put in its place).
    const same = lstatSync(dir, { throwIfNoEntry: false })?.ino === keep.ino;
    if (same && r.spares.length < MAX_SPARES && emptyPair(r, dir)) {
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
