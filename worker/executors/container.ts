import { createHash } from 'node:crypto';
import { existsSync, mkdirSync } from 'node:fs';
import { stat } from 'node:fs/promises';
import { basename, dirname, resolve } from 'node:path';
import type { EnvironmentSpec } from '../../protocol/build-spec.js';
import { ContainerSandbox, PodmanOps, type SandboxGuards } from './container-sandbox.js';
import { canLimitDisk, createDiskLimit } from './disk-limit.js';
import { EnvironmentCache } from './environments/environment-cache.js';
import type { Availability, DiskLimit, Executor, PrepareOptions, Sandbox, SandboxRequest } from './executor.js';
import { oomCounterFile } from './fast/cgroups.js';
import { AgentUnavailable, openFastSandbox, startFastContainer } from './fast/fast-ops.js';
import { findRuncRoot } from './fast/runc-state.js';
import { confinementFlags, CREATE_FLAGS, limitFlags, podman, PodmanError, randomIdBase, removeContainers } from './podman.js';
import { isWarmStamp, removeWarmLeftovers, WARM_AGENT_LABEL, WarmPool, type WarmRecipe } from './warm-pool.js';

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
 *
 * On the fast path, run as root, open() takes a warm container made ahead for the same
 * environment and limits when there is one (warm-pool.ts: never used twice, made only once
 * setWarm(true) says builds may run, all removed by setWarm(false)), and makes one on demand
 * otherwise.
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
  /**
   * Environments kept warm, one container each, made ahead so open() need not run podman (see
   * warm-pool.ts). Default 1; 0 turns warm sandboxes off (so does CROWDBAKE_WARM_SANDBOXES=0,
   * which also sets the number). Only on the fast path, as root, without SELinux.
   */
  warmSandboxes?: number;
  /** Where the executor says what went wrong in the background (a warm sandbox it could not make). Default: stderr. */
  log?: (line: string) => void;
}

export type ContainerMode = 'fast' | 'plain';

export class ContainerExecutor implements Executor {
  readonly kind = 'container' as const;
  readonly ownerId: string;
  readonly environments: EnvironmentCache;
  /** Image of each environment (by environmentKey) as of the last prepare(), so open() need not look again; its id when warm sandboxes are on. */
  private readonly prepared = new Map<string, { ref: string; id: string | null }>();
  /** Warm sandboxes (null: off, or not possible here). */
  readonly warm: WarmPool | null;
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
    const fromEnv = process.env.CROWDBAKE_WARM_SANDBOXES;
    const warm = fromEnv !== undefined && fromEnv !== '' ? Number(fromEnv) : options.warmSandboxes ?? 1;
    if (!Number.isInteger(warm) || warm < 0) {
      throw new Error(`warm sandboxes (${fromEnv !== undefined && fromEnv !== '' ? 'CROWDBAKE_WARM_SANDBOXES' : 'warmSandboxes'}) must be a whole number ≥ 0, not "${fromEnv ?? options.warmSandboxes}"`);
    }
    const log = options.log ?? ((line: string) => process.stderr.write(`${line}\n`));
    this.warm = warm > 0 && this.wantFast && process.getuid?.() === 0 && !selinuxEnabled()
      ? new WarmPool({ ownerId: options.ownerId, size: warm, log }) : null;
  }

  /**
   * Whether builds may run now (the agent's governor and drain): false removes every warm
   * sandbox (resolves once they are gone) and makes none until true again.
   */
  async setWarm(allowed: boolean): Promise<void> {
    await this.warm?.setAllowed(allowed);
  }

  /** Removes the warm sandboxes and their slots (the agent stopping). */
  async close(): Promise<void> {
    await this.warm?.close();
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
    // with podman 4.3.1 + runc 1.1.5, see fast/fast-path.test.ts. Warm containers of an agent
    // process that still runs are its own (warm-pool.ts); those of a dead one go, with their slots.
    const { stdout } = await podman(['ps', '-a', '--filter', `label=${OWNER_LABEL}=${this.ownerId}`,
      '--format', `{{.ID}} {{index .Labels "${WARM_AGENT_LABEL}"}}`], { timeoutMs: 30_000 });
    const ids = stdout.split('\n').map((l) => /^(\S+) ?(.*)$/.exec(l.trim())).filter((m) => m !== null && !isWarmStamp(m[2]!))
      .map((m) => m![1]!);
    if (ids.length > 0) await removeContainers(ids);
    const warm = process.getuid?.() === 0 ? await removeWarmLeftovers(this.ownerId, OWNER_LABEL) : 0;
    return ids.length + warm;
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
    // With warm sandboxes, the image's id now: a warm container of another id is not used.
    this.prepared.set(key, { ref, id: this.warm?.active ? await imageId(ref) : null });
  }

  async environmentId(environment: EnvironmentSpec): Promise<string | null> {
    const p = this.prepared.get(environmentKey(environment));
    if (!p) return null;
    return p.id ?? imageId(p.ref);
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
    const warm = await this.openWarm(request, workdir, buildDir, this.prepared.get(key)!);
    if (warm) return warm;
    try {
      return await this.start(request, workdir, buildDir, this.prepared.get(key)!.ref);
    } catch (e) {
      // Another worker on this machine may have evicted the image since prepare(): make it again, once.
      if (!(e instanceof Error && /image not known/.test(e.message))) throw e;
      await this.prepare(request.environment, () => {}, { limits: request.limits });
      return this.start(request, workdir, buildDir, this.prepared.get(key)!.ref);
    }
  }

  /** The build in a warm container (warm-pool.ts) when one of its shape and image is ready; null: open on demand. */
  private async openWarm(request: SandboxRequest, workdir: string, buildDir: string | null,
    image: { ref: string; id: string | null }): Promise<Sandbox | null> {
    if (!this.warm?.active || !this.fast) return null;
    // Prepared before warm sandboxes were allowed: the id is looked up once here.
    image.id ??= await imageId(image.ref);
    if (image.id === null) return null;
    const entry = await this.warm.take(this.recipe(request, workdir, buildDir, image.ref, image.id));
    if (!entry) return null;
    try {
      await this.warm.attach(entry, workdir, buildDir);
    } catch (e) {
      this.warm.lastError = e instanceof Error ? e.message : String(e);
      return null;
    }
    return ContainerSandbox.start(entry.name, this.warm.opsFor(entry), this.guards(request, workdir, buildDir), entry.oomFile);
  }

  /** How warm containers for builds like `request` are made: its shape as the key, the slot's directories as volumes. */
  private recipe(request: SandboxRequest, workdir: string, buildDir: string | null, ref: string, id: string): WarmRecipe {
    const layout = buildDir !== null ? 'build' as const : 'work' as const;
    // The checkout's directory name is part of the shape only where it is mounted (/build/<src>):
    // a `work` layout's workdir is a fresh directory per build, and its name must not make every
    // build a shape of its own (no warm container would ever match).
    const src = layout === 'build' ? basename(workdir) : '';
    const { cpus, memoryBytes, pids, diskBytes } = request.limits;
    const family = { ref, network: request.network, writableRoot: request.writableRoot === true, layout, src };
    const key = JSON.stringify({ ...family, cpus, memoryBytes, pids, diskBytes });
    const cwd = layout === 'build' ? `/build/${src}` : '/work';
    return {
      key, family: JSON.stringify(family), layout, imageId: id,
      poolId: createHash('sha256').update(key).digest('hex').slice(0, 12),
      what: `environment ${ref} (${JSON.stringify(request.limits)}, network ${request.network ? 'on' : 'off'})`,
      make: async (name, slot, labels) => {
        const base = this.mapIds ? randomIdBase() : null;
        // rslave: the build's directories, bound onto the slot later, reach the container; nothing goes back.
        const volumes = layout === 'build'
          ? (mkdirSync(`${slot}/b/${src}`, { recursive: true }),
          ['--volume', `${slot}/b:/build:${volumeOptions(base !== null, true)}`, '--volume', `${slot}/w:/work:${volumeOptions(false, true)}`, '--workdir', cwd])
          : ['--volume', `${slot}/w:/work:${volumeOptions(base !== null, true)}`, '--workdir', '/work'];
        // --stop-timeout 0: whoever stops it (`podman rmi --force` of its image) kills it at once; nothing in it needs a SIGTERM.
        const args = [...this.createArgs(request, name, volumes, base), '--stop-timeout', '0', ...labels.flatMap((l) => ['--label', l])];
        const made = await startFastContainer(name, args, ref, this.fast?.runcRoot ?? null, cwd);
        const r = await podman(['inspect', '--format', '{{.Image}}', name], { allowFailure: true, timeoutMs: 30_000 });
        if (r.code !== 0) {
          await made.ops.remove().catch(() => {});
          throw new Error(`podman inspect ${name} failed: ${r.stderr.trim()}`);
        }
        return { ...made, imageId: r.stdout.trim(), idBase: base };
      },
    };
  }

  private guards(request: SandboxRequest, workdir: string, buildDir: string | null): SandboxGuards {
    // The build directory (it holds the checkout) is what is disk-limited and given back.
    const top = buildDir ?? workdir;
    const diskBytes = this.limitedDirs.get(top);
    return {
      memoryBytes: request.limits.memoryBytes,
      disk: diskBytes !== undefined ? { dir: top, bytes: diskBytes } : null,
      ownerAfter: this.mapIds ? { dir: top, uid: process.getuid!(), gid: process.getgid!() } : null,
    };
  }

  private async start(request: SandboxRequest, workdir: string, buildDir: string | null, image: string): Promise<Sandbox> {
    const name = `crowdbake-${request.id}`;
    const base = this.mapIds ? randomIdBase() : null;
    // With a build directory: it at /build (U chowns it, the checkout included, to the mapped
    // root), the checkout also at /work, and steps in /build/SRC. Both are the build's own
    // host directories; nothing else of the host is mounted.
    const volumes = buildDir !== null
      ? ['--volume', `${buildDir}:/build:${volumeOptions(base !== null, false)}`, '--volume', `${workdir}:/work:${volumeOptions(false, false)}`,
        '--workdir', `/build/${basename(workdir)}`]
      : ['--volume', `${workdir}:/work:${volumeOptions(base !== null, false)}`, '--workdir', '/work'];
    const createArgs = [...this.createArgs(request, name, volumes, base), '--label', `crowdbake.sandbox=${request.id}`];
    const cwd = buildDir !== null ? `/build/${basename(workdir)}` : '/work';
    const guards = this.guards(request, workdir, buildDir);
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
   * writable places. `volumes`: the build's directories (or a warm container's slot), `base`
   * the user namespace's first host id.
   */
  private createArgs(request: SandboxRequest, name: string, volumes: readonly string[], base: number | null): string[] {
    const { limits } = request;
    const tmpfsSize = limits.diskBytes !== undefined ? `,size=${limits.diskBytes}` : '';
    return [
      ...CREATE_FLAGS, '--pull', 'never',
      '--name', name, '--label', `${OWNER_LABEL}=${this.ownerId}`,
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

/** A volume's options: `U` chowns it to the mapped root (user namespace), `rslave` lets later host mounts in. */
function volumeOptions(chown: boolean, slave: boolean): string {
  return ['rw', ...(selinuxEnabled() ? ['Z'] : []), ...(chown ? ['U'] : []), ...(slave ? ['rslave'] : [])].join(',');
}

/** A podman image's id (64 hex digits). */
async function imageId(ref: string): Promise<string | null> {
  const { stdout } = await podman(['image', 'inspect', '--format', '{{.Id}}', ref], { timeoutMs: 30_000 });
  return /^[0-9a-f]{64}$/.test(stdout.trim()) ? stdout.trim() : null;
}

function initFlags(): string[] {
  const init = INIT_PATHS.find((p) => existsSync(p));
  return init ? ['--init', '--init-path', init] : [];
}

function selinuxEnabled(): boolean {
  return existsSync('/sys/fs/selinux/enforce');
}
