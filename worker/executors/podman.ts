import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync, mkdirSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import type { Duplex, Readable } from 'node:stream';
import { randomInt } from 'node:crypto';
import type { Limits } from '../../protocol/build-spec.js';

/**
 * A thin wrapper around the `podman` CLI. Every call is a child process; errors name the
 * command and carry podman's own message.
 */

export const PODMAN_MISSING = 'podman is not installed (apt-get install podman runc)';

/**
 * Flags every `podman run` / `podman create` needs on these hosts:
 * - crun refuses the cgroup v1 hybrid layout of this kernel, runc works;
 * - root here lacks CAP_SYS_RESOURCE, so the default ulimits (nproc=32768, nofile from
 *   containers.conf) cannot be set and the container fails to start.
 * Checked against podman 4.3.1: `--runtime` works both as a global option and per command;
 * we pass it per command, and only to create/run (exec, kill, pause use the container's).
 */
export const CREATE_FLAGS: readonly string[] = [
  '--runtime', 'runc',
  '--ulimit', 'nofile=4096:4096',
  '--ulimit', 'nproc=4096:4096',
];

/**
 * The confinement every container running the builder's code gets, build steps and
 * `environment.setup` lines alike (container.ts, environments/setup-layer.ts).
 */

/** Enough for a build running as root inside (chown, package managers); nothing network- or admin-ish. */
export const KEEP_CAPS: readonly string[] = ['CHOWN', 'DAC_OVERRIDE', 'FOWNER', 'FSETID', 'KILL', 'SETGID', 'SETUID'];
export const DEFAULT_PIDS = 1024;
/**
 * Run as root, each sandbox gets a user namespace: its uids and gids 0-65535 are host ids
 * FIRST_MAPPED_ID + slot * 65536 + (0-65535), for a slot drawn at random, so root in the
 * container is an unprivileged id on the host that no user or other build owns (up to 2^31).
 */
export const FIRST_MAPPED_ID = 0x70000000;
export const MAPPED_IDS = 65536;
const MAPPED_SLOTS = 4095;

/** The first host id of a fresh random slot of MAPPED_IDS ids. */
export function randomIdBase(): number {
  return FIRST_MAPPED_ID + randomInt(MAPPED_SLOTS) * MAPPED_IDS;
}

/** no-new-privileges, KEEP_CAPS only, and (when `idBase` is set) the user namespace 0 -> idBase. */
export function confinementFlags(idBase: number | null): string[] {
  return [
    '--security-opt', 'no-new-privileges',
    '--cap-drop', 'all', '--cap-add', KEEP_CAPS.join(','),
    ...(idBase !== null ? ['--uidmap', `0:${idBase}:${MAPPED_IDS}`, '--gidmap', `0:${idBase}:${MAPPED_IDS}`] : []),
  ];
}

/** cpus, memory (swap included: no swap beyond it) and pids, DEFAULT_PIDS when none is set. */
export function limitFlags(limits: Limits): string[] {
  return [
    ...(limits.cpus ? ['--cpus', String(limits.cpus)] : []),
    ...(limits.memoryBytes ? ['--memory', `${limits.memoryBytes}b`, '--memory-swap', `${limits.memoryBytes}b`] : []),
    '--pids-limit', String(limits.pids ?? DEFAULT_PIDS),
  ];
}

export class PodmanError extends Error {
  constructor(
    message: string,
    readonly command: string,
    readonly exitCode: number | null,
    readonly stderr: string,
  ) {
    super(message);
    this.name = 'PodmanError';
  }
}

export interface PodmanResult {
  code: number | null;
  stdout: string;
  stderr: string;
}

export interface PodmanOptions {
  /** Piped to podman's stdin (e.g. a tar stream for `podman import -`). */
  input?: Readable;
  /** Kill podman (SIGKILL) and fail after this long. */
  timeoutMs?: number;
  /** Called with each complete stderr line as it arrives (pull progress). */
  onStderrLine?: (line: string) => void;
  /** Resolve instead of throwing when podman exits non-zero. */
  allowFailure?: boolean;
}

/** `podman create --name x …` → "podman create --name x …", shortened for messages. */
export function describe(args: readonly string[]): string {
  const text = ['podman', ...args].join(' ');
  return text.length > 160 ? `${text.slice(0, 157)}...` : text;
}

/**
 * The directory podman runs in. conmon, which podman leaves behind to watch a container,
 * keeps podman's working directory and writes an empty file named `oom` there when the
 * container's memory cgroup kills a process (conmon 2.1): run from the volunteer's checkout
 * or any project's tree, that file would litter it. A directory of our own in the temp dir
 * takes it instead.
 */
let madeCwd: string | null = null;
export function podmanCwd(): string {
  const dir = join(tmpdir(), `crowdbake-podman-${process.getuid?.() ?? 'user'}`);
  // Made once a process (every podman call asks); made again if something removed it.
  if (madeCwd !== dir || !existsSync(dir)) { mkdirSync(dir, { recursive: true, mode: 0o700 }); madeCwd = dir; }
  return dir;
}

/** Starts podman with stdout/stderr piped; the caller handles the streams. */
export function spawnPodman(args: readonly string[], stdin: 'ignore' | 'pipe' = 'ignore'): ChildProcess {
  return spawn('podman', args, { stdio: [stdin, 'pipe', 'pipe'], cwd: podmanCwd() });
}

/** Turns a spawn error into a sentence; ENOENT means podman itself is missing. */
export function spawnErrorMessage(err: NodeJS.ErrnoException, args: readonly string[]): string {
  if (err.code === 'ENOENT') return PODMAN_MISSING;
  return `${describe(args)} could not start: ${err.message}`;
}

/** Runs podman to completion and collects its output; throws a PodmanError on failure. */
export function podman(args: readonly string[], options: PodmanOptions = {}): Promise<PodmanResult> {
  return new Promise((resolve, reject) => {
    const child = spawnPodman(args, options.input ? 'pipe' : 'ignore');
    const out: Buffer[] = [];
    const err: Buffer[] = [];
    let partial = '';
    let timedOut = false;
    let settled = false;
    const timer = options.timeoutMs === undefined ? undefined : setTimeout(() => {
      timedOut = true;
      child.kill('SIGKILL');
    }, options.timeoutMs);

    const fail = (e: Error): void => {
      if (settled) return;
      settled = true;
      if (timer) clearTimeout(timer);
      reject(e);
    };

    child.stdout?.on('data', (c: Buffer) => out.push(c));
    child.stderr?.on('data', (c: Buffer) => {
      err.push(c);
      if (!options.onStderrLine) return;
      partial += c.toString('utf8');
      const lines = partial.split(/\r?\n|\r/);
      partial = lines.pop() ?? '';
      for (const line of lines) if (line.trim()) options.onStderrLine(line);
    });
    child.on('error', (e: NodeJS.ErrnoException) => {
      fail(new PodmanError(spawnErrorMessage(e, args), describe(args), null, ''));
    });
    if (options.input && child.stdin) {
      options.input.on('error', (e) => {
        child.kill('SIGKILL');
        fail(new PodmanError(`${describe(args)}: its input failed: ${e.message}`, describe(args), null, ''));
      });
      child.stdin.on('error', () => { /* podman exited early; its exit code says why */ });
      options.input.pipe(child.stdin);
    }
    child.on('close', (code) => {
      if (settled) return;
      if (timer) clearTimeout(timer);
      if (partial.trim() && options.onStderrLine) options.onStderrLine(partial);
      const result = { code, stdout: Buffer.concat(out).toString('utf8'), stderr: Buffer.concat(err).toString('utf8') };
      if (timedOut) {
        fail(new PodmanError(`${describe(args)} did not finish within ${options.timeoutMs} ms`, describe(args), code, result.stderr));
        return;
      }
      if (code !== 0 && !options.allowFailure) {
        fail(failure(args, code, result.stderr));
        return;
      }
      settled = true;
      resolve(result);
    });
  });
}

/** A PodmanError for a non-zero exit, carrying podman's own "Error: …" lines. */
function failure(args: readonly string[], code: number | null, stderr: string): PodmanError {
  const errors = stderr.split('\n').filter((l) => l.startsWith('Error: ')).map((l) => l.slice(7));
  const why = (errors.length > 0 ? errors.join('; ') : stderr.trim()) || `exit code ${code}`;
  return new PodmanError(`${describe(args)} failed: ${why}`, describe(args), code, stderr);
}

/**
 * Runs a podman command that hands `count` extra sockets (fds 3, 4, …) to what it starts, e.g.
 * `podman run -d --preserve-fds N`. Resolves when podman itself has exited, with its output and
 * the worker's ends of those sockets, which stay open; on failure they are destroyed.
 */
export function podmanWithSockets(args: readonly string[], count: number, timeoutMs: number): Promise<PodmanResult & { sockets: Duplex[] }> {
  return new Promise((resolve, reject) => {
    const stdio: StdioPipe[] = ['ignore', 'pipe', 'pipe', ...Array<StdioPipe>(count).fill('pipe')];
    const child = spawn('podman', args, { stdio, cwd: podmanCwd() });
    const sockets = child.stdio.slice(3) as Duplex[];
    // Node resumes (and so drops the data of) a child's unread stdio streams right after it
    // exits, unless a 'readable' listener holds them: keep what arrives for the caller.
    const hold = (): void => {};
    for (const s of sockets) s.on('readable', hold);
    const out: Buffer[] = [];
    const err: Buffer[] = [];
    let open = 3;
    let code: number | null = null;
    let timedOut = false;
    const timer = setTimeout(() => { timedOut = true; child.kill('SIGKILL'); }, timeoutMs);
    const fail = (e: Error): void => {
      clearTimeout(timer);
      for (const s of sockets) s.destroy();
      reject(e);
    };
    const done = (): void => {
      if (--open > 0) return;
      clearTimeout(timer);
      const stderr = Buffer.concat(err).toString('utf8');
      if (timedOut) fail(new PodmanError(`${describe(args)} did not finish within ${timeoutMs} ms`, describe(args), code, stderr));
      else if (code !== 0) fail(failure(args, code, stderr));
      else {
        const result = { code, stdout: Buffer.concat(out).toString('utf8'), stderr, sockets };
        // After node's own flush of the child's stdio (a nextTick after 'exit') has passed.
        setImmediate(() => {
          for (const s of sockets) s.off('readable', hold);
          resolve(result);
        });
      }
    };
    child.stdout?.on('data', (c: Buffer) => out.push(c)).on('close', done);
    child.stderr?.on('data', (c: Buffer) => err.push(c)).on('close', done);
    child.on('error', (e: NodeJS.ErrnoException) => fail(new PodmanError(spawnErrorMessage(e, args), describe(args), null, '')));
    child.on('exit', (c) => { code = c; done(); });
  });
}

type StdioPipe = 'ignore' | 'pipe';

/** `podman image exists REF`: exit 0 yes, 1 no, anything else is an error. */
export async function imageExists(ref: string): Promise<boolean> {
  const r = await podman(['image', 'exists', ref], { allowFailure: true, timeoutMs: 30_000 });
  if (r.code === 0) return true;
  if (r.code === 1) return false;
  throw new PodmanError(`podman image exists ${ref} failed: ${r.stderr.trim() || `exit code ${r.code}`}`,
    `podman image exists ${ref}`, r.code, r.stderr);
}

/**
 * `podman rm --force --time 0` of these containers. With a user namespace, podman's own cleanup
 * of a container that just stopped may still hold its /dev/shm mount ("device or resource
 * busy"): asked again, rm succeeds (podman 4.3.1).
 */
export async function removeContainers(names: readonly string[]): Promise<void> {
  for (let attempt = 1; ; attempt++) {
    try {
      await podman(['rm', '--force', '--time', '0', ...names], { timeoutMs: 60_000 });
      return;
    } catch (e) {
      if (attempt >= 20 || !(e instanceof PodmanError && /resource busy/.test(e.stderr))) throw e;
      await sleep(50 * attempt);
    }
  }
}
