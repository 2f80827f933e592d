import { existsSync } from 'node:fs';
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';

/**
 * Where runc keeps the state of podman's containers, so the worker can learn a container's
 * host pid (and from it, its cgroups) with one file read instead of a `podman inspect`.
 * Podman does not pass `--root` to runc, so runc uses its default: /run/runc for root,
 * $XDG_RUNTIME_DIR/runc otherwise.
 */
export function findRuncRoot(): string | null {
  const candidates = [
    ...(process.getuid?.() === 0 ? ['/run/runc'] : []),
    ...(process.env.XDG_RUNTIME_DIR?.startsWith('/') ? [join(process.env.XDG_RUNTIME_DIR, 'runc')] : []),
  ];
  return candidates.find((dir) => existsSync(dir)) ?? null;
}

const FULL_ID = /^[0-9a-f]{64}$/;

/** The host pid of the container's first process, from runc's state.json; null if not found. */
export async function runcInitPid(runcRoot: string, containerId: string): Promise<number | null> {
  if (!FULL_ID.test(containerId)) return null;
  const text = await readFile(join(runcRoot, containerId, 'state.json'), 'utf8').catch(() => null);
  if (text === null) return null;
  try {
    const pid = (JSON.parse(text) as { init_process_pid?: unknown }).init_process_pid;
    return typeof pid === 'number' && Number.isInteger(pid) && pid > 0 ? pid : null;
  } catch {
    return null;
  }
}
