import { existsSync } from 'node:fs';
import { readFile, stat } from 'node:fs/promises';
import { resolve } from 'node:path';
import type { EnvironmentSpec } from '../../protocol/build-spec.js';
import { ensureBusyboxImage, sha256File } from './busybox-image.js';
import { ContainerSandbox } from './container-sandbox.js';
import type { Availability, Executor, Sandbox, SandboxRequest } from './executor.js';
import { CREATE_FLAGS, imageExists, podman, PodmanError } from './podman.js';

/**
 * Runs builds in rootful or rootless podman containers: one container per build attempt,
 * kept alive by a placeholder `sleep`, each step a `podman exec` in it. The only host path
 * the container sees is the workdir, bind-mounted at /work.
 */

export const OWNER_LABEL = 'crowdbake.owner';
export const ROOTFS_REPO = 'localhost/crowdbake-rootfs';

/** Enough for a build running as root inside (chown, package managers); nothing network- or admin-ish. */
const KEEP_CAPS = ['CHOWN', 'DAC_OVERRIDE', 'FOWNER', 'FSETID', 'KILL', 'SETGID', 'SETUID'];
const INIT_PATHS = ['/usr/libexec/podman/catatonit', '/usr/lib/podman/catatonit', '/usr/bin/catatonit', '/usr/local/libexec/podman/catatonit'];
const DEFAULT_PIDS = 1024;
const ID = /^[a-z0-9-]+$/;
const OWNER = /^[A-Za-z0-9._-]+$/;

export interface ContainerExecutorOptions {
  /** Identifies this worker; containers are labelled with it so cleanupStale() removes only ours. */
  ownerId: string;
}

export class ContainerExecutor implements Executor {
  readonly kind = 'container' as const;
  readonly ownerId: string;
  /** Image of each base as of the last prepare(), so open() need not look again. */
  private readonly prepared = new Map<string, string>();
  /** rootfs tarball (path:size:mtime) → image ref, so a tarball is hashed once. */
  private readonly rootfsRefs = new Map<string, Promise<string>>();

  constructor(options: ContainerExecutorOptions) {
    if (!OWNER.test(options.ownerId)) {
      throw new Error(`ownerId "${options.ownerId}" must be letters, digits, ".", "_" or "-"`);
    }
    this.ownerId = options.ownerId;
  }

  async isAvailable(): Promise<Availability> {
    try {
      await podman(['--runtime', 'runc', 'info', '--format', '{{.Host.OCIRuntime.Name}}'], { timeoutMs: 20_000 });
      return { ok: true };
    } catch (e) {
      return { ok: false, reason: e instanceof Error ? e.message : String(e) };
    }
  }

  async cleanupStale(): Promise<number> {
    const { stdout } = await podman(['ps', '-a', '--filter', `label=${OWNER_LABEL}=${this.ownerId}`, '--format', '{{.ID}}'],
      { timeoutMs: 30_000 });
    const ids = stdout.split('\n').map((s) => s.trim()).filter(Boolean);
    if (ids.length > 0) await podman(['rm', '-f', '-t', '0', ...ids], { timeoutMs: 60_000 });
    return ids.length;
  }

  async prepare(environment: EnvironmentSpec, progress: (line: string) => void): Promise<void> {
    if (environment.setup.length > 0) {
      throw new Error(`setup steps are not supported yet (environment.setup has ${environment.setup.length})`);
    }
    const base = environment.base;
    this.prepared.delete(base);
    let ref: string;
    if (base === 'busybox') {
      ref = await ensureBusyboxImage(progress);
    } else if (base.startsWith('image:')) {
      ref = imageRef(base);
      if (!await imageExists(ref)) {
        progress(`pulling ${ref}`);
        await podman(['pull', ref], { onStderrLine: progress, timeoutMs: 30 * 60_000 });
      }
    } else if (base.startsWith('rootfs:')) {
      ref = await this.rootfsImage(base.slice('rootfs:'.length), progress);
    } else {
      throw new Error(`base "${base}" is not supported by the container executor yet`);
    }
    this.prepared.set(base, ref);
  }

  async open(request: SandboxRequest): Promise<Sandbox> {
    if (!ID.test(request.id)) throw new Error(`sandbox id "${request.id}" must be [a-z0-9-]+`);
    const workdir = resolve(request.workdir);
    const st = await stat(workdir).catch(() => null);
    if (!st?.isDirectory()) throw new Error(`workdir ${workdir} is not a directory`);
    if (workdir.includes(':') || workdir.includes(',')) throw new Error(`workdir ${workdir} must not contain ":" or ","`);
    let image = this.prepared.get(request.environment.base);
    if (!image) {
      await this.prepare(request.environment, () => {});
      image = this.prepared.get(request.environment.base)!;
    }
    const name = `crowdbake-${request.id}`;
    const { limits } = request;
    const args = [
      'run', '--detach', ...CREATE_FLAGS, '--pull', 'never',
      '--name', name, '--label', `${OWNER_LABEL}=${this.ownerId}`, '--label', `crowdbake.sandbox=${request.id}`,
      ...initFlags(),
      ...(request.network ? [] : ['--network', 'none']),
      ...(limits.cpus ? ['--cpus', String(limits.cpus)] : []),
      ...(limits.memoryBytes ? ['--memory', `${limits.memoryBytes}b`, '--memory-swap', `${limits.memoryBytes}b`] : []),
      '--pids-limit', String(limits.pids ?? DEFAULT_PIDS),
      '--security-opt', 'no-new-privileges',
      '--cap-drop', 'all', '--cap-add', KEEP_CAPS.join(','),
      '--volume', `${workdir}:/work:rw${selinuxEnabled() ? ',Z' : ''}`,
      '--tmpfs', '/tmp:rw,exec,nosuid,nodev,mode=1777',
      '--workdir', '/work',
      '--entrypoint', 'sleep', image, '2147483647',
    ];
    try {
      await podman(args, { timeoutMs: 120_000 });
      const { stdout } = await podman(['inspect', '--format', '{{.State.Running}} {{.State.Pid}}', name], { timeoutMs: 30_000 });
      const [running, pid] = stdout.trim().split(' ');
      if (running !== 'true') {
        throw new Error(`container ${name} stopped right after starting (does image ${image} have "sleep"?)`);
      }
      const oomFile = await oomCounterFile(Number(pid));
      return await ContainerSandbox.start(name, limits.memoryBytes, oomFile);
    } catch (e) {
      await podman(['rm', '-f', '-t', '0', name], { allowFailure: true, timeoutMs: 60_000 }).catch(() => {});
      if (e instanceof PodmanError) throw new Error(`could not start the build container: ${e.message}`);
      throw e;
    }
  }

  /** `rootfs:PATH.tar` → localhost/crowdbake-rootfs:<sha256 prefix>, imported once. */
  private async rootfsImage(path: string, progress: (line: string) => void): Promise<string> {
    const file = resolve(path);
    const st = await stat(file).catch(() => null);
    if (!st?.isFile()) throw new Error(`rootfs tarball ${file} does not exist`);
    const key = `${file}:${st.size}:${st.mtimeMs}`;
    let refP = this.rootfsRefs.get(key);
    if (!refP) {
      refP = sha256File(file).then((sha) => `${ROOTFS_REPO}:${sha.slice(0, 12)}`);
      this.rootfsRefs.set(key, refP);
      refP.catch(() => this.rootfsRefs.delete(key));
    }
    const ref = await refP;
    if (!await imageExists(ref)) {
      progress(`importing ${file} as ${ref}`);
      await podman(['import', file, ref], { timeoutMs: 30 * 60_000 });
    }
    return ref;
  }
}

function imageRef(base: string): string {
  const ref = base.slice('image:'.length).trim();
  if (!ref || ref.startsWith('-')) throw new Error(`base "${base}" does not name an image`);
  return ref;
}

function initFlags(): string[] {
  const init = INIT_PATHS.find((p) => existsSync(p));
  return init ? ['--init', '--init-path', init] : [];
}

function selinuxEnabled(): boolean {
  return existsSync('/sys/fs/selinux/enforce');
}

/**
 * The host file counting OOM kills in the container's memory cgroup (v1: memory.oom_control,
 * v2: memory.events, both have an `oom_kill N` line), or null when it cannot be found.
 * `podman inspect`'s OOMKilled only covers the container's main process, not an exec'd step.
 */
async function oomCounterFile(pid: number): Promise<string | null> {
  if (!Number.isInteger(pid) || pid <= 0) return null;
  const text = await readFile(`/proc/${pid}/cgroup`, 'utf8').catch(() => '');
  for (const line of text.split('\n')) {
    const [, controllers, path] = /^\d+:([^:]*):(.*)$/.exec(line) ?? [];
    if (path === undefined || path.includes('..')) continue;
    const file = controllers === '' ? `/sys/fs/cgroup${path}/memory.events`
      : controllers?.split(',').includes('memory') ? `/sys/fs/cgroup/memory${path}/memory.oom_control` : null;
    if (file && existsSync(file)) return file;
  }
  return null;
}
