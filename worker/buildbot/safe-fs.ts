import { closeSync, constants, fstatSync, lstatSync, mkdirSync, openSync, readdirSync, readSync, unlinkSync, type Dirent, type Stats } from 'node:fs';
import { isAbsolute, relative, resolve, sep } from 'node:path';

/**
 * Opening paths under the worker's basedir without ever following a symlink, for the host-side
 * work on directories a build's container can write (downloads, uploads, logfiles, mkdir,
 * rmfile, the .git checks). A path is walked one component at a time: each directory is opened
 * with O_DIRECTORY|O_NOFOLLOW relative to the descriptor of its parent (through
 * /proc/self/fd/N/<name>, which the kernel resolves from that open directory, not by name
 * from the root), and the last component with O_NOFOLLOW. A symlink anywhere — also one a
 * process of the build swaps in between our check and our use — makes the open fail (ELOOP or
 * ENOTDIR) instead of leading outside; `..` cannot appear (the path is normalised first and
 * must lie in the basedir). The basedir itself is the volunteer's and is trusted.
 */

const DIR_FLAGS = constants.O_RDONLY | constants.O_DIRECTORY | constants.O_NOFOLLOW;

/** An error naming the path, with the errno code of the failed step (ELOOP for a symlink). */
function refused(path: string, e: unknown): Error {
  const err = e as NodeJS.ErrnoException;
  const why = err.code === 'ELOOP' || err.code === 'ENOTDIR' ? 'a part of it is a symlink or not a directory; refused' : err.message;
  return Object.assign(new Error(`${path}: ${why}`), { code: err.code, errno: err.errno });
}

/** The components of `path` below `basedir`; throws when it is not inside. */
export function componentsBeneath(basedir: string, path: string): string[] {
  const rel = relative(resolve(basedir), resolve(path));
  if (rel === '') return [];
  if (rel === '..' || rel.startsWith(`..${sep}`) || isAbsolute(rel)) throw new Error(`${path} is outside the worker's basedir ${basedir}`);
  return rel.split(sep);
}

/** fd of `path`'s parent directory (walked without following symlinks) and the last component. */
function openParent(basedir: string, path: string, mkdirs: boolean): { dirfd: number; name: string | null } {
  const parts = componentsBeneath(basedir, path);
  let dirfd = openSync(resolve(basedir), constants.O_RDONLY | constants.O_DIRECTORY);
  const last = parts.pop() ?? null;
  try {
    for (const part of parts) {
      const at = `/proc/self/fd/${dirfd}/${part}`;
      let next: number;
      try {
        next = openSync(at, DIR_FLAGS);
      } catch (e) {
        if (!mkdirs || (e as NodeJS.ErrnoException).code !== 'ENOENT') throw e;
        try { mkdirSync(at, 0o777); } catch (m) { if ((m as NodeJS.ErrnoException).code !== 'EEXIST') throw m; }
        next = openSync(at, DIR_FLAGS);
      }
      closeSync(dirfd);
      dirfd = next;
    }
  } catch (e) {
    closeSync(dirfd);
    throw refused(path, e);
  }
  return { dirfd, name: last };
}

/**
 * Opens `path` (inside `basedir`) with `flags` (O_NOFOLLOW is added), never following a
 * symlink at any component. `mkdirs`: creates missing parent directories (each also opened
 * without following). Returns the descriptor; the caller closes it.
 */
export function openBeneath(basedir: string, path: string, flags: number, o: { mode?: number; mkdirs?: boolean } = {}): number {
  const { dirfd, name } = openParent(basedir, path, o.mkdirs ?? false);
  try {
    if (name === null) return openSync(resolve(basedir), flags & ~(constants.O_CREAT | constants.O_TRUNC), o.mode);
    return openSync(`/proc/self/fd/${dirfd}/${name}`, flags | constants.O_NOFOLLOW, o.mode ?? 0o666);
  } catch (e) {
    throw refused(path, e);
  } finally {
    closeSync(dirfd);
  }
}

/** The entry itself (lstat: a symlink is reported as one), its parents walked without following; null when missing. */
export function lstatBeneath(basedir: string, path: string): Stats | null {
  let parent: { dirfd: number; name: string | null };
  try {
    parent = openParent(basedir, path, false);
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'ENOENT') return null;
    throw e;
  }
  try {
    return lstatSync(parent.name === null ? resolve(basedir) : `/proc/self/fd/${parent.dirfd}/${parent.name}`, { throwIfNoEntry: false }) ?? null;
  } finally {
    closeSync(parent.dirfd);
  }
}

/** mkdir -p of `path`, no component followed if it is a symlink. */
export function mkdirBeneath(basedir: string, path: string): void {
  const { dirfd, name } = openParent(basedir, path, true);
  try {
    if (name === null) return;
    const at = `/proc/self/fd/${dirfd}/${name}`;
    try { mkdirSync(at, 0o777); } catch (e) { if ((e as NodeJS.ErrnoException).code !== 'EEXIST') throw refused(path, e); }
    closeSync(openBeneathAt(at, path));
  } finally {
    closeSync(dirfd);
  }
}

function openBeneathAt(at: string, path: string): number {
  try { return openSync(at, DIR_FLAGS); } catch (e) { throw refused(path, e); }
}

/** The entries of a directory (not followed if it is a symlink). */
export function readdirBeneath(basedir: string, path: string): Dirent[] {
  const fd = openBeneath(basedir, path, DIR_FLAGS);
  try {
    return readdirSync(`/proc/self/fd/${fd}`, { withFileTypes: true });
  } finally {
    closeSync(fd);
  }
}

/** Removes a file (or symlink) in its directory, the directory walked without following. */
export function unlinkBeneath(basedir: string, path: string): void {
  const { dirfd, name } = openParent(basedir, path, false);
  try {
    if (name === null) throw new Error(`${path} is the basedir`);
    unlinkSync(`/proc/self/fd/${dirfd}/${name}`);
  } finally {
    closeSync(dirfd);
  }
}

/** A regular file's first `max` bytes at most (a fifo, device or directory is refused). */
export function readFileBeneath(basedir: string, path: string, max: number): Buffer {
  const fd = openBeneath(basedir, path, constants.O_RDONLY | constants.O_NONBLOCK);
  try {
    const st = fstatSync(fd);
    if (!st.isFile()) throw new Error(`${path} is not a regular file`);
    const buf = Buffer.alloc(Math.min(max, st.size));
    let n = 0;
    while (n < buf.length) {
      const r = readSync(fd, buf, n, buf.length - n, n);
      if (r === 0) break;
      n += r;
    }
    return buf.subarray(0, n);
  } finally {
    closeSync(fd);
  }
}
