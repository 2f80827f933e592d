import { mkdir, open, readFile, rename, stat, unlink, utimes } from 'node:fs/promises';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { processAlive } from '../../process-alive.js';

/**
 * A lock shared by the processes of one machine: the file DIR/NAME.lock, created exclusively,
 * holding the owner's pid. The holder touches it every few seconds; a lock whose pid is gone
 * or which nobody touched for STALE_MS is taken over (its holder crashed).
 */

const HEARTBEAT_MS = 5_000;
const STALE_MS = 60_000;
const POLL_MS = 200;

export interface LockOptions {
  /** Called once if the lock is held by someone else and we have to wait. */
  onWait?: (holderPid: number | null) => void;
  /** For tests. */
  staleMs?: number;
}

export async function withFileLock<T>(dir: string, name: string, f: () => Promise<T>, options: LockOptions = {}): Promise<T> {
  if (!/^[A-Za-z0-9._-]+$/.test(name)) throw new Error(`lock name "${name}" must be letters, digits, ".", "_" or "-"`);
  await mkdir(dir, { recursive: true, mode: 0o700 });
  const owner = (await stat(dir)).uid;
  if (process.getuid && owner !== process.getuid()) {
    throw new Error(`lock directory ${dir} belongs to uid ${owner}, not to this user (${process.getuid()}); remove it or choose another`);
  }
  const file = join(dir, `${name}.lock`);
  let waited = false;
  for (;;) {
    if (await tryCreate(file)) break;
    const holder = await holderOf(file, options.staleMs ?? STALE_MS);
    if (holder === 'stale') {
      // Rename first so that of two processes seeing the same stale lock only one removes it.
      const aside = `${file}.stale-${process.pid}`;
      if (await rename(file, aside).then(() => true, () => false)) await unlink(aside).catch(() => {});
      continue;
    }
    if (!waited) {
      waited = true;
      options.onWait?.(holder);
    }
    await sleep(POLL_MS);
  }
  const beat = setInterval(() => {
    const now = new Date();
    utimes(file, now, now).catch(() => {});
  }, HEARTBEAT_MS);
  beat.unref();
  try {
    return await f();
  } finally {
    clearInterval(beat);
    await unlink(file).catch(() => {});
  }
}

async function tryCreate(file: string): Promise<boolean> {
  try {
    const handle = await open(file, 'wx', 0o600);
    try {
      await handle.writeFile(`${process.pid}\n`);
    } finally {
      await handle.close();
    }
    return true;
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'EEXIST') return false;
    throw new Error(`could not create lock file ${file}: ${(e as Error).message}`);
  }
}

/** The pid holding the lock (null if not written yet), or 'stale'. A vanished file counts as stale: retry at once. */
async function holderOf(file: string, staleMs: number): Promise<number | null | 'stale'> {
  const [text, st] = await Promise.all([readFile(file, 'utf8').catch(() => null), stat(file).catch(() => null)]);
  if (text === null || st === null) return 'stale';
  if (Date.now() - st.mtimeMs > staleMs) return 'stale';
  const pid = Number.parseInt(text, 10);
  if (!Number.isInteger(pid) || pid <= 0) return null;
  return processAlive(pid) ? pid : 'stale';
}

