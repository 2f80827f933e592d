import { existsSync } from 'node:fs';
import { ContainerSandbox, PodmanOps, type ContainerOps, type SandboxGuards } from '../container-sandbox.js';
import { podman, podmanWithSockets, removeContainers } from '../podman.js';
import { AgentChannel } from './agent-channel.js';
import { AGENT_FDS, AGENT_SCRIPT, stepCode } from './agent-protocol.js';
import { ContainerCgroup, oomCounterFile } from './cgroups.js';
import { CpuQuota } from './cpu-quota.js';
import { runcInitPid } from './runc-state.js';

/**
 * The fast container path: the container is still created and removed by podman (so it has
 * its labels, limits, mounts and network, and `podman ps` and cleanupStale see it), but its
 * main process is an agent that starts each step itself (fast/agent-protocol.ts), and freeze,
 * thaw and kill write the container's cgroup files. Per step this saves a `podman exec`
 * (≈150-250 ms → ≈2 ms); per freeze a `podman pause` (≈50-70 ms → a few ms).
 */
export class FastOps implements ContainerOps {
  readonly limitCpu?: (cpus: number | null) => Promise<void>;
  readonly cpuUsageUsec?: () => number | null;

  constructor(
    private readonly channel: AgentChannel,
    /** Null when the container's cgroups cannot be controlled here: podman pause/kill then. */
    readonly cgroup: ContainerCgroup | null,
    private readonly podmanOps: PodmanOps,
    /** The container's CPU quota ("keep going gently"); null when its CPU cgroup cannot be written here. */
    readonly cpu: CpuQuota | null = null,
  ) {
    if (cpu) {
      this.limitCpu = async (cpus) => { if (this.channel.alive) await cpu.set(cpus); };
      this.cpuUsageUsec = () => cpu.usageUsecSync();
    }
  }

  problem(): string | null {
    return this.channel.alive ? null : 'the build container stopped (its agent is gone)';
  }

  exec(argv: string[], env: Record<string, string>): ReturnType<ContainerOps['exec']> {
    return { child: this.channel.start(stepCode(argv, env, this.podmanOps.cwd)), spawnError: (e) => e.message };
  }

  /** Nothing to do once the container has stopped (its agent is gone): nothing runs in it. */
  async freeze(): Promise<void> {
    if (!this.channel.alive) return;
    await (this.cgroup ? this.cgroup.freeze() : this.podmanOps.freeze());
  }

  async thaw(): Promise<void> {
    if (!this.channel.alive) return;
    await (this.cgroup ? this.cgroup.thaw() : this.podmanOps.thaw());
  }

  kill(): Promise<void> {
    return this.cgroup ? this.cgroup.killAll() : this.podmanOps.kill();
  }

  /** Stops everything at once through the cgroup (also when frozen), then `podman rm`. */
  async remove(): Promise<void> {
    await this.stop().catch(() => {});
    await this.podmanOps.remove();
  }

  /**
   * Closes the agent's sockets and kills every process of the container; resolves once none is
   * left (cgroup) — or, with `waitGone` false, once each has its SIGKILL —, or once `podman kill`
   * returned when the cgroup cannot be written here. The container itself is still there (for
   * `podman rm`).
   */
  async stop(waitGone = true): Promise<void> {
    this.channel.close();
    await (this.cgroup ? this.cgroup.killAll(waitGone) : this.podmanOps.kill());
  }

  /** Whether the agent still answers (the container runs). */
  get alive(): boolean {
    return this.channel.alive;
  }

  /**
   * Whether the container still runs, as far as can be told without a round trip: its agent's
   * sockets are open and its cgroup is still there (a container removed from outside loses its
   * cgroup as `podman rm` returns, before this process has read the sockets' end).
   */
  get running(): boolean {
    return this.channel.alive && (this.cgroup === null || existsSync(this.cgroup.dir));
  }
}

/** Thrown when this image cannot run the agent (no POSIX /bin/sh): the caller uses the plain path. */
export class AgentUnavailable extends Error {}

const AGENT_READY_MS = 30_000;

/**
 * Runs the container (`podman run -d` with `createArgs`, the agent as its entrypoint) and
 * returns its sandbox. `runcRoot` is where runc keeps podman's containers (for the pid without
 * a `podman inspect`), or null.
 */
export async function openFastSandbox(name: string, createArgs: readonly string[], image: string,
  runcRoot: string | null, guards: SandboxGuards, cwd = '/work'): Promise<ContainerSandbox> {
  const { ops, oomFile } = await startFastContainer(name, createArgs, image, runcRoot, cwd);
  try {
    return await ContainerSandbox.start(name, ops, guards, oomFile);
  } catch (e) {
    await ops.remove().catch(() => {});
    throw e;
  }
}

/** A running fast-path container with its agent ready, not yet a build's sandbox (see warm-pool.ts). */
export interface FastContainer {
  ops: FastOps;
  oomFile: string | null;
}

/** The container and its agent of openFastSandbox; on failure nothing is left behind. */
export async function startFastContainer(name: string, createArgs: readonly string[], image: string,
  runcRoot: string | null, cwd = '/work'): Promise<FastContainer> {
  const args = ['run', '--detach', ...createArgs, '--preserve-fds', String(AGENT_FDS), '--entrypoint', '/bin/sh', image, '-c', AGENT_SCRIPT];
  let channel: AgentChannel | undefined;
  try {
    let r;
    try {
      r = await podmanWithSockets(args, AGENT_FDS, 120_000);
    } catch (e) {
      if (e instanceof Error && /executable file .*not found|no such file or directory/i.test(e.message)) {
        throw new AgentUnavailable(`image ${image} cannot run the agent: ${e.message}`);
      }
      throw e;
    }
    const [cmd, ctl, out, err] = r.sockets;
    channel = new AgentChannel(cmd!, ctl!, out!, err!);
    const id = r.stdout.trim().split('\n').pop() ?? '';
    const [pid] = await Promise.all([
      containerPid(runcRoot, id, name),
      channel.ready(AGENT_READY_MS).catch((e: Error) => { throw new AgentUnavailable(`image ${image} cannot run the agent: ${e.message}`); }),
    ]);
    const cgroup = pid ? await ContainerCgroup.ofPid(pid) : null;
    const oomFile = pid ? await oomCounterFile(pid) : null;
    const cpu = pid ? await CpuQuota.ofPid(pid) : null;
    return { ops: new FastOps(channel, cgroup, new PodmanOps(name, cwd), cpu), oomFile };
  } catch (e) {
    channel?.close();
    await removeContainers([name]).catch(() => {});
    throw e;
  }
}

async function containerPid(runcRoot: string | null, id: string, name: string): Promise<number | null> {
  const fromState = runcRoot ? await runcInitPid(runcRoot, id) : null;
  if (fromState) return fromState;
  const r = await podman(['inspect', '--format', '{{.State.Pid}}', name], { allowFailure: true, timeoutMs: 30_000 });
  const pid = Number(r.stdout.trim());
  return r.code === 0 && Number.isInteger(pid) && pid > 0 ? pid : null;
}
