import { existsSync } from 'node:fs';
import { stat } from 'node:fs/promises';
import { basename, dirname, resolve } from 'node:path';
import type { EnvironmentSpec } from '../../protocol/build-spec.js';
import { ContainerSandbox, PodmanOps, type SandboxGuards } from './container-sandbox.js';
import { canLimitDisk, createDiskLimit } from './disk-limit.js';
import { EnvironmentCache } from './environments/environment-cache.js';
import type { Availability, DiskLimit, Executor, PrepareOptions, Sandbox, SandboxRequest } from './executor.js';
import { oomCounterFile } from './fast/cgroups.js';
import { AgentUnavailable, openFastSandbox } from './fast/fast-ops.js';
import { findRuncRoot } from './fast/runc-state.js';
import { confinementFlags, CREATE_FLAGS, limitFlags, podman, PodmanError, randomIdBase, removeContainers } from './podman.js';

export { FIRST_MAPPED_ID } from './podman.js';

export { ROOTFS_REPO } from './environments/base-image.js';

/**
 * Runs builds in rootful or rootless podman containers: one container per build attempt. The
 * only host paths the container sees are the workdir, bind-mounted at /work, and (when the
 * request has one) the build's own directory holding it, at /build (steps then run in /build/src).
 *
 * Two ways to drive it, chosen once by isAvailable() (or the first open(), if that comes first):
 * - fast (default): the container's main process is a small shell agent that starts each step
 *   itself, and freeze/thaw/kill write the container's cgroup files (see fast/fast-ops.ts);
 * - plain: a placeholder `sleep`, one `podman exec` per step, `podman pause`/`kill`. Used when
 *   `fastPath: false`, CROWDBAKE_CONTAINER_FAST=0 or podman is older than 4; and per build for
 *   an image without a POSIX /bin/sh.
 */

export const OWNER_LABEL = 'crowdbake.owner';

const INIT_PATHS = ['/usr/libexec/podman/catatonit', '/usr/lib/podman/catatonit', '/usr/bin/catatonit', '/usr/local/libexec/podman/catatonit'];
/** Writable places besides /work when the root filesystem is read-only: tmpfs, counted as memory. */
const TMPFS_DIRS = ['/tmp', '/var/tmp', '/run', '/root'];
const TMPFS_MODES: Record<string, string> = { '/run': '0755', '/root': '0700' };
const ID = /^[a-z0-9-]+$/;
const OWNER = /^[A-Za-z0-9._-]+$/;

export interface ContainerExecutorOptions {
  /** Identifies this worker; containers are labelled with it so cleanupStale() removes only ours. */
  ownerId: string;
  /** Environment cache: holds index.json (last use of each image) and debootstrap's temporary roots. Default ~/.cache/crowdbake/environments. */
  cacheDir?: string;
  /** Lock files shared by the workers of this machine. Default $TMPDIR/crowdbake-env-locks-UID. */
  lockDir?: string;
  /** After an environment is built, least recently used environment images beyond this are removed. Default 10 GiB. */
  cacheBudgetBytes?: number;
  /** Mirror for `debootstrap:SUITE` with a Debian suite (Ubuntu codenames use archive.ubuntu.com). Default http://deb.debian.org/debian. */
  debianMirror?: string;
  /** Time limit of one setup line. Default 1 h. */
  setupTimeoutMs?: number;
  /** Time limit of one debootstrap run. Default 30 min. */
  debootstrapTimeoutMs?: number;
  /** The volunteer's directory for `rootfs:NAME` bases (`--bases-dir`). Default: none, such bases are refused. */
  basesDir?: string;
  /** Use the fast path when podman supports it (default true; CROWDBAKE_CONTAINER_FAST=0 also turns it off). */
  fastPath?: boolean;
  /**
   * When running as root, map the container's root to an unprivileged host uid (default true;
   * CROWDBAKE_CONTAINER_USERNS=0 also turns it off). Rootless podman maps it to the user anyway.
   */
  userNamespace?: boolean;
}

export type ContainerMode = 'fast' | 'plain';

export class ContainerExecutor implements Executor {
  readonly kind = 'container' as const;
  readonly ownerId: string;
  readonly environments: EnvironmentCache;
  /** Image of each environment (by environmentKey) as of the last prepare(), so open() need not look again. */
  private readonly prepared = new Map<string, string>();
  private readonly wantFast: boolean;
  /** Set by isAvailable() (or the first open()): the fast path, with runc's state directory when found. */
  private fast: { runcRoot: string | null } | null | undefined;
  private readonly mapIds: boolean;
  /** Workdirs made filesystems of their own by limitDisk(), and their size. */
  private readonly limitedDirs = new Map<string, number>();

  constructor(options: ContainerExecutorOptions) {
    if (!OWNER.test(options.ownerId)) {
      throw new Error(`ownerId "${options.ownerId}" must be letters, digits, ".", "_" or "-"`);
    }
    this.ownerId = options.ownerId;
    this.wantFast = (options.fastPath ?? true) && process.env.CROWDBAKE_CONTAINER_FAST !== '0';
    this.mapIds = (options.userNamespace ?? true) && process.env.CROWDBAKE_CONTAINER_USERNS !== '0' && process.getuid?.() === 0;
    this.environments = new EnvironmentCache({
      containerLabels: [`${OWNER_LABEL}=${options.ownerId}`],
      cacheDir: options.cacheDir, lockDir: options.lockDir, budgetBytes: options.cacheBudgetBytes,
      debianMirror: options.debianMirror, setupTimeoutMs: options.setupTimeoutMs, debootstrapTimeoutMs: options.debootstrapTimeoutMs,
      basesDir: options.basesDir, userNamespace: this.mapIds,
    });
  }

  /** How sandboxes are driven: decided by isAvailable(), or by the first open() if that comes first. */
  get mode(): ContainerMode {
    return this.fast ? 'fast' : 'plain';
  }

  async isAvailable(): Promise<Availability> {
    try {
      const { stdout } = await podman(['--runtime', 'runc', 'info', '--format', '{{.Host.OCIRuntime.Name}} {{.Version.Version}}'],
        { timeoutMs: 20_000 });
      const major = Number(/ (\d+)\./.exec(stdout)?.[1] ?? '0');
      // --preserve-fds with `run --detach` is checked against podman 4.3.1.
      this.fast = this.wantFast && major >= 4 ? { runcRoot: findRuncRoot() } : null;
      return { ok: true };
    } catch (e) {
      this.fast = null;
      return { ok: false, reason: e instanceof Error ? e.message : String(e) };
    }
  }

  async cleanupStale(): Promise<number> {
    // Also removes containers frozen through their cgroup (podman sees them running): checked
    // with podman 4.3.1 + runc 1.1.5, see fast/fast-path.test.ts.
    const { stdout } = await podman(['ps', '-a', '--filter', `label=${OWNER_LABEL}=${this.ownerId}`, '--format', '{{.ID}}'],
      { timeoutMs: 30_000 });
    const ids = stdout.split('\n').map((s) => s.trim()).filter(Boolean);
    if (ids.length > 0) await removeContainers(ids);
    return ids.length;
  }

  /**
   * Builds or reuses the environment: its base (busybox, debootstrap:SUITE, rootfs:PATH.tar,
   * image:REF) and one cached layer per setup line (see environments/environment-cache.ts).
   * Setup lines run sandboxed like steps, under `options` (limits, freeze gate, cancel).
   */
  async prepare(environment: EnvironmentSpec, progress: (line: string) => void, options: PrepareOptions = {}): Promise<void> {
    const key = environmentKey(environment);
    this.prepared.delete(key);
    const { ref } = await this.environments.prepare(environment, progress, options);
    this.prepared.set(key, ref);
  }

  async environmentId(environment: EnvironmentSpec): Promise<string | null> {
    const ref = this.prepared.get(environmentKey(environment));
    if (!ref) return null;
    const { stdout } = await podman(['image', 'inspect', '--format', '{{.Id}}', ref], { timeoutMs: 30_000 });
    return /^[0-9a-f]{64}$/.test(stdout.trim()) ? stdout.trim() : null;
  }

  /** An ext4 image loop-mounted on the workdir (root only; see disk-limit.ts). */
  async limitDisk(dir: string, bytes: number): Promise<DiskLimit | null> {
    if (!canLimitDisk()) return null;
    const path = resolve(dir);
    const disk = await createDiskLimit(path, bytes);
    this.limitedDirs.set(path, bytes);
    return {
      bytes,
      release: async () => {
        this.limitedDirs.delete(path);
        await disk.release();
      },
    };
  }

  /** Whether the container's root is an unprivileged uid on the host (a user namespace). */
  get userNamespace(): boolean {
    return this.mapIds;
  }

  async open(request: SandboxRequest): Promise<Sandbox> {
    if (!ID.test(request.id)) throw new Error(`sandbox id "${request.id}" must be [a-z0-9-]+`);
    const workdir = resolve(request.workdir);
    const st = await stat(workdir).catch(() => null);
    if (!st?.isDirectory()) throw new Error(`workdir ${workdir} is not a directory`);
    if (workdir.includes(':') || workdir.includes(',')) throw new Error(`workdir ${workdir} must not contain ":" or ","`);
    const buildDir = request.buildDir !== undefined ? resolve(request.buildDir) : null;
    if (buildDir !== null && dirname(workdir) !== buildDir) {
      throw new Error(`workdir ${workdir} must be directly in the build directory ${buildDir}`);
    }
    if (this.fast === undefined) await this.isAvailable();
    const key = environmentKey(request.environment);
    // Setup lines built here (none prepared yet, or evicted) still get the build's limits.
    if (!this.prepared.has(key)) await this.prepare(request.environment, () => {}, { limits: request.limits });
    try {
      return await this.start(request, workdir, buildDir, this.prepared.get(key)!);
    } catch (e) {
      // Another worker on this machine may have evicted the image since prepare(): make it again, once.
      if (!(e instanceof Error && /image not known/.test(e.message))) throw e;
      await this.prepare(request.environment, () => {}, { limits: request.limits });
      return this.start(request, workdir, buildDir, this.prepared.get(key)!);
    }
  }

  private async start(request: SandboxRequest, workdir: string, buildDir: string | null, image: string): Promise<Sandbox> {
    const name = `crowdbake-${request.id}`;
    const createArgs = this.createArgs(request, workdir, buildDir, name);
    const cwd = buildDir !== null ? `/build/${basename(workdir)}` : '/work';
    // The build directory (it holds the checkout) is what is disk-limited and given back.
    const top = buildDir ?? workdir;
    const diskBytes = this.limitedDirs.get(top);
    const guards: SandboxGuards = {
      memoryBytes: request.limits.memoryBytes,
      disk: diskBytes !== undefined ? { dir: top, bytes: diskBytes } : null,
      ownerAfter: this.mapIds ? { dir: top, uid: process.getuid!(), gid: process.getgid!() } : null,
    };
    try {
      if (this.fast) {
        try {
          return await openFastSandbox(name, createArgs, image, this.fast.runcRoot, guards, cwd);
        } catch (e) {
          if (!(e instanceof AgentUnavailable)) throw e;
        }
      }
      return await this.startPlain(name, createArgs, image, guards, cwd);
    } catch (e) {
      if (e instanceof PodmanError) throw new Error(`could not start the build container: ${e.message}`);
      throw e;
    }
  }

  /** The plain path: `sleep` as the main process; its sandbox uses podman exec/pause/kill. */
  private async startPlain(name: string, createArgs: string[], image: string, guards: SandboxGuards, cwd: string): Promise<Sandbox> {
    try {
      await podman(['run', '--detach', ...createArgs, '--entrypoint', 'sleep', image, '2147483647'], { timeoutMs: 120_000 });
      const { stdout } = await podman(['inspect', '--format', '{{.State.Running}} {{.State.Pid}}', name], { timeoutMs: 30_000 });
      const [running, pid] = stdout.trim().split(' ');
      if (running !== 'true') {
        throw new Error(`container ${name} stopped right after starting (does image ${image} have "sleep"?)`);
      }
      const oomFile = await oomCounterFile(Number(pid));
      return await ContainerSandbox.start(name, new PodmanOps(name, cwd), guards, oomFile);
    } catch (e) {
      await removeContainers([name]).catch(() => {});
      throw e;
    }
  }

  /**
   * Everything `podman run` needs but the entrypoint and image: labels, limits, mounts, network.
   * The root filesystem is read-only unless the request says otherwise (its writable layer
   * would be on the volunteer's disk, unbounded); /work, and tmpfs at TMPFS_DIRS, are the
   * writable places.
   */
  private createArgs(request: SandboxRequest, workdir: string, buildDir: string | null, name: string): string[] {
    const { limits } = request;
    const tmpfsSize = limits.diskBytes !== undefined ? `,size=${limits.diskBytes}` : '';
    const base = this.mapIds ? randomIdBase() : null;
    const volumeOptions = (chown: boolean): string => ['rw', ...(selinuxEnabled() ? ['Z'] : []), ...(this.mapIds && chown ? ['U'] : [])].join(',');
    // With a build directory: it at /build (U chowns it, the checkout included, to the mapped
    // root), the checkout also at /work, and steps in /build/SRC. Both are the build's own
    // host directories; nothing else of the host is mounted.
    const volumes = buildDir !== null
      ? ['--volume', `${buildDir}:/build:${volumeOptions(true)}`, '--volume', `${workdir}:/work:${volumeOptions(false)}`,
        '--workdir', `/build/${basename(workdir)}`]
      : ['--volume', `${workdir}:/work:${volumeOptions(true)}`, '--workdir', '/work'];
    return [
      ...CREATE_FLAGS, '--pull', 'never',
      '--name', name, '--label', `${OWNER_LABEL}=${this.ownerId}`, '--label', `crowdbake.sandbox=${request.id}`,
      ...initFlags(),
      ...(request.network ? [] : ['--network', 'none']),
      ...limitFlags(limits),
      ...confinementFlags(base),
      ...(request.writableRoot ? [] : ['--read-only', '--read-only-tmpfs=false']),
      ...TMPFS_DIRS.flatMap((d) => ['--tmpfs', `${d}:rw,exec,nosuid,nodev,mode=${TMPFS_MODES[d] ?? '1777'}${tmpfsSize}`]),
      ...volumes,
    ];
  }
}

/** The environment as a map key: base and setup lines. */
function environmentKey(environment: EnvironmentSpec): string {
  return JSON.stringify([environment.base, environment.setup]);
}

function initFlags(): string[] {
  const init = INIT_PATHS.find((p) => existsSync(p));
  return init ? ['--init', '--init-path', init] : [];
}

function selinuxEnabled(): boolean {
  return existsSync('/sys/fs/selinux/enforce');
}
