import { randomBytes } from 'node:crypto';
import { chmod, lchown, lstat, readdir } from 'node:fs/promises';
import { isAbsolute, join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import type { Limits } from '../../../protocol/build-spec.js';
import type { Freezable, PrepareOptions } from '../executor.js';
import { confinementFlags, CREATE_FLAGS, DEFAULT_PIDS, limitFlags, MAPPED_IDS, podman, podmanCwd, randomIdBase } from '../podman.js';
import { formatBytes } from '../step-support.js';
import { ENV_LABEL, KEY_LABEL } from './keys.js';
import { runLines } from './run-lines.js';
import type { Progress } from './shared-build.js';

/**
 * One setup line: `podman run` it under /bin/sh -c in a container from the previous layer,
 * then `podman commit` the container as the next layer. The container is removed in every
 * case; a failing line commits nothing.
 *
 * A setup line is the builder file's code, so it runs in the same sandbox as a build step
 * (container.ts): a user namespace when the worker runs as root (root inside is an
 * unprivileged host id of a fresh random slot; `podman commit` stores the layer's files with
 * their in-container ids, so later mapped step containers see them owned as written),
 * KEEP_CAPS only, no-new-privileges, the build's memory/swap, pids and cpus limits, a time
 * limit (frozen time not counted), cancel, and the build's freeze gate (`podman pause`).
 *
 * The one difference is the network: setup lines install packages, so they run on podman's
 * default bridge (never the host's network) even when the builder says `network: false`, and
 * the build log says so before the line runs. The layer is keyed by the base and the lines
 * (keys.ts), so what it fetched is shared only with builds declaring the same lines.
 */

export interface SetupLayerRequest {
  parent: string;
  tag: string;
  key: string;
  line: string;
  /** "setup 2/3", for messages. */
  label: string;
  /** Labels for the container ("crowdbake.owner=ID", so cleanupStale() removes a leftover one). */
  containerLabels: readonly string[];
  timeoutMs: number;
  /** The build's limits (already the tighter of the builder's and the volunteer's). */
  limits?: Limits;
  /** Map the container's ids to an unprivileged host range (the executor runs as root). */
  userNamespace?: boolean;
  gate?: PrepareOptions['gate'];
  signal?: AbortSignal;
}

export const SETUP_NETWORK_NOTE = 'runs with network (package installation; build steps follow the builder\'s `network`)';

export async function buildSetupLayer(r: SetupLayerRequest, progress: Progress): Promise<void> {
  const name = `crowdbake-setup-${r.key.slice(0, 12)}-${randomBytes(4).toString('hex')}`;
  const limits = r.limits ?? {};
  const idBase = r.userNamespace ? randomIdBase() : null;
  const restore = await entrypointChanges(r.parent);
  const args = [
    'run', ...CREATE_FLAGS, '--pull', 'never', '--name', name,
    ...r.containerLabels.flatMap((l) => ['--label', l]),
    ...limitFlags(limits),
    ...confinementFlags(idBase),
    // Keep podman's own variables out of the committed image.
    '--unsetenv', 'TERM', '--unsetenv', 'container',
    '--entrypoint', '/bin/sh', r.parent, '-c', r.line,
  ];
  progress(`${r.label} ${SETUP_NETWORK_NOTE}; limits: ${describeSetupLimits(limits, r.timeoutMs)}`);
  if (r.gate) await r.gate.waitThawed(r.signal ?? new AbortController().signal);
  if (r.signal?.aborted) throw new Error(`${r.label} was cancelled before it started; nothing was cached for it`);
  const freezer = new SetupFreezer(name);
  let attached = false;
  try {
    const running = runLines('podman', args, {
      onLine: progress, timeoutMs: r.timeoutMs, signal: r.signal, cwd: podmanCwd(),
      onTimer: (t) => { freezer.timer = t; },
      onTimeout: async () => { await podman(['kill', '--signal', 'KILL', name], { allowFailure: true, timeoutMs: 30_000 }); },
    }).finally(() => { freezer.finished = true; });
    // Attached while it runs; a freeze that comes before podman made the container waits for it (or for the end).
    if (r.gate) {
      await r.gate.attach(freezer);
      attached = true;
    }
    const result = await running;
    if (result.cancelled) throw new Error(`${r.label} ${JSON.stringify(r.line)} was cancelled; nothing was cached for it`);
    if (result.timedOut) {
      throw new Error(`${r.label} ${JSON.stringify(r.line)} did not finish within its time limit of ${Math.round(r.timeoutMs / 1000)} s; nothing was cached for it`);
    }
    if (result.code !== 0) {
      if (limits.memoryBytes && await oomKilled(name)) {
        throw new Error(`${r.label} ${JSON.stringify(r.line)} ran out of memory: a process was killed for exceeding the memory limit of ${formatBytes(limits.memoryBytes)}; nothing was cached for it`);
      }
      // podman 4.3 on cgroup v1 does not always report an OOM kill of a child of the line's
      // shell; a SIGKILL nobody here sent is, in a memory-limited sandbox, the OOM killer.
      if (limits.memoryBytes && result.code === 137) {
        throw new Error(`${r.label} ${JSON.stringify(r.line)} was killed (exit 137, SIGKILL): most likely a process exceeded the memory limit of ${formatBytes(limits.memoryBytes)}; nothing was cached for it`);
      }
      const podmanError = result.code === 125 ? `: ${result.tail.filter((l) => l.startsWith('Error: ')).join('; ') || 'podman failed'}` : '';
      const forkFailed = result.tail.some((l) => /can't fork|fork: (retry: )?Resource temporarily unavailable|Cannot allocate memory/i.test(l));
      const pidsNote = forkFailed ? ` (it could not start a process: setup lines run with the pids limit of ${limits.pids ?? DEFAULT_PIDS})` : '';
      throw new Error(`${r.label} ${JSON.stringify(r.line)} failed with exit code ${result.code ?? 'none'}${podmanError}${pidsNote}; nothing was cached for it`);
    }
    if (idBase !== null) await unshiftLayer(name, idBase);
    // The container's labels would end up on the image (and on every sandbox made from it): blank them.
    const blank = r.containerLabels.flatMap((l) => ['--change', `LABEL ${l.split('=')[0]!}=""`]);
    await podman(['commit', '--quiet', ...restore, ...blank,
      '--change', `LABEL ${ENV_LABEL}=1`, '--change', `LABEL ${KEY_LABEL}=${r.key}`, name, r.tag], { timeoutMs: 30 * 60_000 });
  } finally {
    freezer.finished = true;
    if (attached) r.gate?.detach(freezer);
    await podman(['rm', '--force', '--time', '0', name], { allowFailure: true, timeoutMs: 60_000 }).catch(() => {});
  }
}

/**
 * podman 4.3's commit stores the files of a container run with --uidmap under their HOST ids
 * (idBase + n), which a later step container, mapped to another range, would see as nobody.
 * So before the commit, the container's upper layer (what the line wrote) gets its ids shifted
 * back to the in-container ones, n.
 *
 * This runs on the host as root over a tree the setup line wrote, and is safe because: the
 * container has exited (nothing can swap a path under us), the walk starts at podman's upper
 * directory and descends only into entries lstat() calls directories (never a symlink),
 * ownership changes use lchown (never follows a link), only ids inside the line's own mapped
 * range are changed, and chmod, which restores the setuid/setgid bits chown clears, is only
 * called on entries lstat() saw as regular files or directories.
 */
async function unshiftLayer(name: string, idBase: number): Promise<void> {
  const { stdout } = await podman(['inspect', '--format', '{{.GraphDriver.Data.UpperDir}}', name], { timeoutMs: 30_000 });
  const upper = stdout.trim();
  if (!isAbsolute(upper) || upper.includes('\n')) throw new Error(`podman gave no upper directory for setup container ${name} (${JSON.stringify(upper)})`);
  const shift = (id: number): number => (id >= idBase && id < idBase + MAPPED_IDS ? id - idBase : id);
  const visit = async (path: string): Promise<void> => {
    const st = await lstat(path);
    const uid = shift(st.uid);
    const gid = shift(st.gid);
    if (uid !== st.uid || gid !== st.gid) {
      await lchown(path, uid, gid);
      if ((st.isFile() || st.isDirectory()) && (st.mode & 0o6000) !== 0) await chmod(path, st.mode & 0o7777);
    }
    if (st.isDirectory()) {
      for (const entry of await readdir(path)) await visit(join(path, entry));
    }
  };
  await visit(upper);
}

/** "memory 64 MiB, pids 1024, cpus 2, time 3600 s": what the setup line's sandbox enforces. */
export function describeSetupLimits(limits: Limits, timeoutMs: number): string {
  return [
    limits.memoryBytes ? `memory ${formatBytes(limits.memoryBytes)}` : 'memory unlimited',
    `pids ${limits.pids ?? DEFAULT_PIDS}`,
    ...(limits.cpus ? [`cpus ${limits.cpus}`] : []),
    `time ${Math.round(timeoutMs / 1000)} s`,
  ].join(', ');
}

async function oomKilled(name: string): Promise<boolean> {
  const r = await podman(['inspect', '--format', '{{.State.OOMKilled}}', name], { allowFailure: true, timeoutMs: 30_000 });
  return r.stdout.trim() === 'true';
}

/**
 * The running setup container, for the build's freeze gate: `podman pause` (cgroup freezer)
 * and `unpause`, with the line's time limit paused meanwhile. A freeze that comes while podman
 * is still creating the container waits until it runs (or the line is over).
 */
class SetupFreezer implements Freezable {
  finished = false;
  timer: { pause(): void; resume(): void } | undefined;
  private frozen = false;

  constructor(private readonly name: string) {}

  async freeze(): Promise<void> {
    this.frozen = true;
    this.timer?.pause();
    for (;;) {
      if (this.finished || !this.frozen) return;
      const state = await containerStatus(this.name);
      if (state === 'paused') return;
      if (state === 'running') {
        const r = await podman(['pause', this.name], { allowFailure: true, timeoutMs: 30_000 });
        if (r.code === 0) return;
      } else if (state === 'exited' || state === 'stopped') {
        return;
      }
      await sleep(100);
    }
  }

  async thaw(): Promise<void> {
    this.frozen = false;
    if (!this.finished && (await containerStatus(this.name)) === 'paused') {
      await podman(['unpause', this.name], { timeoutMs: 30_000 });
    }
    this.timer?.resume();
  }
}

async function containerStatus(name: string): Promise<string | null> {
  const r = await podman(['inspect', '--format', '{{.State.Status}}', name], { allowFailure: true, timeoutMs: 30_000 });
  return r.code === 0 ? r.stdout.trim() : null;
}

/** `--change` flags giving the committed layer its parent's ENTRYPOINT and CMD, not the /bin/sh -c LINE we ran. */
async function entrypointChanges(parent: string): Promise<string[]> {
  const { stdout } = await podman(['image', 'inspect', '--format', '{{json .Config.Entrypoint}}\t{{json .Config.Cmd}}', parent],
    { timeoutMs: 30_000 });
  const [entrypoint, cmd] = stdout.trim().split('\t').map((j) => {
    const v = JSON.parse(j || 'null') as unknown;
    return Array.isArray(v) ? JSON.stringify(v) : '[]';
  });
  return ['--change', `ENTRYPOINT ${entrypoint ?? '[]'}`, '--change', `CMD ${cmd ?? '[]'}`];
}
