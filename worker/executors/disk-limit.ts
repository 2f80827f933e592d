import { execFile } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { readdir, rm, statfs, truncate, writeFile } from 'node:fs/promises';
import { resolve } from 'node:path';
import { promisify } from 'node:util';
import type { DiskLimit } from './executor.js';
import { formatBytes } from './step-support.js';

/**
 * A build's disk limit, enforced: its workdir becomes a filesystem of its own, an ext4 image
 * of `bytes` (a sparse file next to the workdir, `DIR.img`) loop-mounted on the workdir.
 * Writing past it fails with ENOSPC inside the build; the volunteer's disk holds at most the
 * image. Needs root (mount); the image is deleted on release, and a worker that was killed
 * unmounts what it left (releaseStaleDiskLimits) before it removes its old workdirs.
 */

const run = promisify(execFile);
const TIMEOUT_MS = 60_000;
/** ext4 needs some room for itself; below this mkfs.ext4 refuses or leaves nothing usable. */
const MIN_BYTES = 2 * 1024 * 1024;

export function imagePathOf(dir: string): string {
  return `${resolve(dir)}.img`;
}

/** True when this process may create loop-mounted filesystems (root, with mkfs.ext4 and mount). */
export function canLimitDisk(): boolean {
  return process.getuid?.() === 0;
}

/**
 * Makes the empty directory `dir` an ext4 filesystem of `bytes` (no journal, no reserved
 * blocks, mounted nosuid,nodev). Resolves with its release: unmount, delete the image.
 */
export async function createDiskLimit(dir: string, bytes: number): Promise<DiskLimit> {
  const path = resolve(dir);
  const entries = await readdir(path);
  if (entries.length > 0) throw new Error(`cannot limit the disk of ${path}: it is not empty`);
  const image = imagePathOf(path);
  const size = Math.max(MIN_BYTES, Math.floor(bytes / 4096) * 4096);
  try {
    await writeFile(image, '');
    await truncate(image, size);
    await run('mkfs.ext4', ['-q', '-F', '-m', '0', '-O', '^has_journal', '-E', 'nodiscard', image], { timeout: TIMEOUT_MS });
    await run('mount', ['-t', 'ext4', '-o', 'loop,nosuid,nodev', image, path], { timeout: TIMEOUT_MS });
    await rm(`${path}/lost+found`, { recursive: true, force: true });
  } catch (e) {
    await unmount(path).catch(() => {});
    await rm(image, { force: true });
    throw new Error(`could not set up the disk limit of ${formatBytes(bytes)} for ${path}: ${describe(e)}`);
  }
  let released: Promise<void> | undefined;
  return {
    bytes,
    release: () => (released ??= (async () => {
      await unmount(path);
      await rm(image, { force: true });
    })()),
  };
}

/**
 * True when the filesystem at `dir` is (nearly) full: less than 2 MiB (or a tenth of a tiny
 * one) is left, or, after a
 * step that failed, less than 1% of it. A writer that met ENOSPC leaves up to one buffer
 * (dd's bs, a linker's chunk) unwritten, so "full" is never exactly zero bytes free.
 */
export async function diskFull(dir: string, stepFailed: boolean): Promise<boolean> {
  const s = await statfs(dir).catch(() => null);
  if (!s) return false;
  const free = s.bavail * s.bsize;
  const total = s.blocks * s.bsize;
  return free < Math.max(Math.min(2 * 1024 * 1024, total / 10), stepFailed ? total / 100 : 0);
}

/**
 * Unmounts every filesystem mounted at or below `root` (lazily when busy: a leftover
 * container may still hold one). Run before a worker deletes the workdirs of an earlier run.
 * Returns how many it unmounted.
 */
export async function releaseStaleDiskLimits(root: string): Promise<number> {
  const base = resolve(root);
  const points = mountPoints().filter((p) => p === base || p.startsWith(`${base}/`));
  // Deepest first, so nested mounts go before their parents.
  points.sort((a, b) => b.length - a.length);
  for (const p of points) await unmount(p);
  return points.length;
}

function mountPoints(): string[] {
  let text = '';
  try {
    text = readFileSync('/proc/self/mountinfo', 'utf8');
  } catch {
    return [];
  }
  const out: string[] = [];
  for (const line of text.split('\n')) {
    const field = line.split(' ')[4];
    if (field) out.push(field.replace(/\\([0-7]{3})/g, (_, o: string) => String.fromCharCode(parseInt(o, 8))));
  }
  return out;
}

async function unmount(path: string): Promise<void> {
  if (!mountPoints().includes(path)) return;
  try {
    await run('umount', [path], { timeout: TIMEOUT_MS });
  } catch {
    await run('umount', ['-l', path], { timeout: TIMEOUT_MS }).catch((e: unknown) => {
      throw new Error(`could not unmount ${path}: ${describe(e)}`);
    });
  }
}

function describe(e: unknown): string {
  const err = e as { stderr?: string; message?: string };
  return (err.stderr?.trim() || err.message || String(e)).split('\n')[0]!;
}
