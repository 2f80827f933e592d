import { execFile } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { existsSync, mkdirSync, readdirSync, readFileSync, rmdirSync, rmSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { promisify } from 'node:util';
import type { ContainerOps } from './container-sandbox.js';
import type { FastContainer, FastOps } from './fast/fast-ops.js';
import { podman, removeContainers } from './podman.js';

/**
 * Warm sandboxes: fast-path containers (fast/fast-ops.ts) made ahead of the build that will
 * use them, so open() costs two bind mounts instead of a `podman run`, and destroy() a cgroup
 * kill and two unmounts instead of a `podman rm` (which runs afterwards, in the background).
 *
 * - **One build, one container.** A warm container is taken by exactly one open() and removed
 *   after that build; it is never handed out again. It has run nothing but the agent before:
 *   no file, /tmp entry or process of another build can be in it.
 * - **Where the build's directories come from.** A warm container is made with two empty
 *   directories of its own, a *slot* (`ROOT/STAMP/N/b` at /build and `N/w` at /work), mounted
 *   `rslave` from a shared mount (ROOT/STAMP bound on itself). open() bind-mounts the build's
 *   directory onto `b` and its checkout onto `w` on the host; the mounts propagate into the
 *   container (host → container only: rslave, and the container has no CAP_SYS_ADMIN to mount
 *   anything itself). destroy() kills every process of the container, then unmounts both.
 *   So the container sees exactly what an on-demand one would: the build's own directories.
 * - **Its shape is decided before the build.** The recipe's key holds everything that decides
 *   the container (image, limits, network, read-only root, layout); a warm container is used
 *   only for a build of the same key and of the same image id (checked at each take).
 * - **Limits are part of the shape.** A build whose limits (the builder's, tightened by the
 *   volunteer's) differ from the warm container's does not take it; the older recipe of the
 *   same family is dropped and its container removed, so a limit changed between warm-up and
 *   take is never bypassed. A CPU cap ("keep going gently", too hot) is written to the taken
 *   container's own cgroup by the freeze gate, as for one made on demand.
 * - **Few, and only while builds may run.** At most `size` environments are kept warm, one
 *   container each: the most recently opened ones. Nothing is made until setAllowed(true) (the
 *   agent's governor says builds may run); setAllowed(false) (paused, in use, schedule off,
 *   too hot; draining, stopping) removes them all; true makes them again. After close() nothing
 *   is ever made again.
 * - **Not on the build's critical path.** destroy() resolves once every process of the
 *   container has its SIGKILL and the build's directories are unmounted from it; `podman rm`
 *   follows in the background (settled() waits for it; close() too, so a worker that stops
 *   cleanly leaves nothing; after a crash the label finds it).
 * - **Owned and labelled.** Each container carries the owner label and WARM_AGENT_LABEL (boot
 *   id, pid and start time of the process that made it); removeWarmLeftovers() removes those
 *   whose process is gone, and their slots, at the next start.
 *
 * Needs root (bind mounts on the host) and no SELinux relabelling; container.ts makes no
 * pool otherwise.
 */

const exec = promisify(execFile);

export const WARM_AGENT_LABEL = 'crowdbake.warm.agent';
export const WARM_POOL_LABEL = 'crowdbake.warm.pool';
/** Where the slots live: a tmpfs, so a reboot leaves nothing. One directory per owner, one under it per agent process. */
export const WARM_ROOT = '/run/crowdbake-warm';

/** How warm containers of one shape are made; container.ts gives one with each open(). */
export interface WarmRecipe {
  /** Everything that decides the container: image, limits, network, read-only root, layout. */
  key: string;
  /**
   * The key without the limits: a recipe of the same family and other limits (the volunteer
   * changed theirs, or the builder did) replaces the older one, whose warm container is removed.
   */
  family: string;
  /** A short hash of `key`, for the pool label. */
  poolId: string;
  /** The image id the container must be made from (as of the last prepare()). */
  imageId: string;
  /** The environment and limits, for messages. */
  what: string;
  /** 'build': the slot's b/ at /build and w/ at /work (a SandboxRequest with buildDir); 'work': w/ at /work. */
  layout: 'build' | 'work';
  /** Runs the container with the slot's directories as its volumes and `labels` added. */
  make(name: string, slot: string, labels: readonly string[]): Promise<WarmMade>;
}

export interface WarmMade extends FastContainer {
  /** The image id the container was made from. */
  imageId: string;
  /** The first host id of its user namespace (for the chown podman's `U` would do), or null. */
  idBase: number | null;
}

export interface WarmEntry extends WarmMade {
  readonly name: string;
  readonly slot: string;
  readonly key: string;
  readonly layout: 'build' | 'work';
}

export interface WarmPoolOptions {
  ownerId: string;
  /** Environments kept warm, one container each. 0: none. */
  size: number;
  log: (line: string) => void;
  /** Default WARM_ROOT/<ownerId>. */
  root?: string;
}

export class WarmPool {
  /** This process, as written on its containers and slots. */
  readonly stamp = agentStamp(process.pid);
  /** Why the last warm container could not be made (cleared when one is made), or null. */
  lastError: string | null = null;
  private allowed = false;
  private closed = false;
  /** Most recently opened last; at most `size`. */
  private readonly recipes: WarmRecipe[] = [];
  private readonly ready = new Map<string, WarmEntry>();
  private readonly making = new Map<string, Promise<void>>();
  private readonly background = new Set<Promise<void>>();
  private rootDir: Promise<string> | null = null;
  private seq = 0;
  private readonly tag = randomBytes(3).toString('hex');

  constructor(private readonly o: WarmPoolOptions) {
    if (!Number.isInteger(o.size) || o.size < 0) throw new Error(`warm sandboxes must be a whole number ≥ 0, not ${o.size}`);
  }

  get size(): number {
    return this.o.size;
  }

  /** Whether warm containers may exist now (setAllowed). */
  get active(): boolean {
    return this.allowed && this.o.size > 0;
  }

  /** Names of the warm containers ready now. */
  readyNames(): string[] {
    return [...this.ready.values()].map((e) => e.name);
  }

  /**
   * The warm container for `recipe`, taken out of the pool for good (null: open on demand),
   * and the pool refilled behind it. Waits for one being made for the same key. A warm
   * container of another image id, or whose agent is gone, is removed instead of used.
   */
  async take(recipe: WarmRecipe): Promise<WarmEntry | null> {
    if (this.o.size === 0) return null;
    this.remember(recipe);
    if (!this.allowed) return null;
    if (!this.ready.has(recipe.key)) await this.making.get(recipe.key);
    const entry = this.ready.get(recipe.key) ?? null;
    this.ready.delete(recipe.key);
    let usable = entry;
    if (entry && (entry.imageId !== recipe.imageId || !entry.ops.running)) {
      this.o.log(`warm sandbox ${entry.name} not used: ${entry.ops.running ? `its image ${short(entry.imageId)} is no longer ${recipe.what}'s (${short(recipe.imageId)})` : 'its container stopped'}`);
      this.discard(entry);
      usable = null;
    }
    this.refill();
    return usable;
  }

  /**
   * Builds may run (true) or not: false removes every warm container (resolves once they are
   * gone) and makes none until true again, which makes them for the environments seen recently.
   */
  async setAllowed(allowed: boolean): Promise<void> {
    if (this.closed && allowed) return;
    this.allowed = allowed;
    if (allowed) {
      this.refill();
      return;
    }
    await Promise.all(this.making.values());
    for (const e of [...this.ready.values()]) this.discard(e);
    this.ready.clear();
    await this.settled();
  }

  /** Resolves once nothing is being made or removed (tests, the bench, close()). */
  async settled(): Promise<void> {
    while (this.making.size > 0 || this.background.size > 0) {
      await Promise.all([...this.making.values(), ...this.background]);
    }
  }

  /** Removes everything the pool made, its slots' root included. */
  async close(): Promise<void> {
    this.closed = true;
    await this.setAllowed(false);
    if (!this.rootDir) return;
    const dir = await this.rootDir.catch(() => null);
    this.rootDir = null;
    if (dir) {
      await removeSlotTree(dir);
      removeIfEmpty(dirname(dir));
    }
  }

  /**
   * Hands the build's directories to the warm container: `buildDir` onto the slot's b/ (layout
   * 'build'), `workdir` onto w/, and, with a user namespace, their files to its mapped root
   * (what podman's `U` does for an on-demand container). On failure the container is removed.
   */
  async attach(entry: WarmEntry, workdir: string, buildDir: string | null): Promise<void> {
    try {
      if (entry.layout === 'build' && buildDir === null) throw new Error('a warm sandbox of layout "build" needs a build directory');
      // All at once: the chown is of the build's own directory, not of the slot.
      const results = await Promise.allSettled([
        ...(entry.layout === 'build' ? [exec('mount', ['--bind', buildDir!, join(entry.slot, 'b')])] : []),
        exec('mount', ['--bind', workdir, join(entry.slot, 'w')]),
        ...(entry.idBase !== null ? [exec('chown', ['-R', '-P', '-h', `${entry.idBase}:${entry.idBase}`, '--', buildDir ?? workdir], { timeout: 300_000 })] : []),
      ]);
      const failed = results.find((r) => r.status === 'rejected');
      if (failed) throw failed.reason;
    } catch (e) {
      this.removeLater(entry, true);
      throw new Error(`could not hand the build's directories to warm sandbox ${entry.name}: ${errorText(e)}`);
    }
  }

  /** The ContainerOps of a taken, attached warm container: remove() kills and unmounts, podman rm follows later. */
  opsFor(entry: WarmEntry): ContainerOps {
    return new WarmOps(entry, () => this.removeLater(entry, false));
  }

  private remember(recipe: WarmRecipe): void {
    // The same key again, or the same family with other limits: the newer recipe replaces it.
    for (let i = this.recipes.length - 1; i >= 0; i--) {
      const old = this.recipes[i]!;
      if (old.key !== recipe.key && old.family !== recipe.family) continue;
      this.recipes.splice(i, 1);
      const e = old.key !== recipe.key ? this.ready.get(old.key) : undefined;
      if (e) {
        this.o.log(`warm sandbox ${e.name} removed: made under other limits than ${recipe.what}`);
        this.ready.delete(old.key);
        this.discard(e);
      }
    }
    this.recipes.push(recipe);
    while (this.recipes.length > this.o.size) {
      const old = this.recipes.shift()!;
      const e = this.ready.get(old.key);
      if (e) { this.ready.delete(old.key); this.discard(e); }
    }
  }

  private refill(): void {
    if (!this.allowed) return;
    for (const r of this.recipes) {
      if (this.ready.has(r.key) || this.making.has(r.key)) continue;
      const p = this.make(r).finally(() => this.making.delete(r.key));
      this.making.set(r.key, p);
    }
  }

  private async make(r: WarmRecipe): Promise<void> {
    const n = ++this.seq;
    const name = `crowdbake-warm-${process.pid}-${this.tag}-${n}`;
    let slot: string | null = null;
    try {
      slot = join(await this.root(), String(n));
      mkdirSync(join(slot, 'w'), { recursive: true, mode: 0o755 });
      if (r.layout === 'build') mkdirSync(join(slot, 'b'), { recursive: true, mode: 0o755 });
      const made = await r.make(name, slot, [`${WARM_AGENT_LABEL}=${this.stamp}`, `${WARM_POOL_LABEL}=${r.poolId}`]);
      const entry: WarmEntry = { ...made, name, slot, key: r.key, layout: r.layout };
      const current = this.recipes.find((x) => x.key === r.key);
      if (!this.allowed || !current || this.ready.has(r.key)) {
        this.discard(entry);
        return;
      }
      this.ready.set(r.key, entry);
      this.lastError = null;
    } catch (e) {
      this.lastError = `could not make a warm sandbox for ${r.what}: ${errorText(e)}; builds open their sandbox on demand until one can be made`;
      this.o.log(this.lastError);
      if (slot) rmSync(slot, { recursive: true, force: true });
    }
  }

  /** ROOT/STAMP, bound on itself as a shared mount, so mounts made in its slots reach the containers. */
  private root(): Promise<string> {
    this.rootDir ??= (async () => {
      const base = this.o.root ?? join(WARM_ROOT, this.o.ownerId);
      const dir = join(base, this.stamp);
      mkdirSync(dir, { recursive: true, mode: 0o711 });
      await exec('mount', ['--bind', dir, dir]);
      // Private first: its own peer group, not the parent's (which may be shared with the whole system).
      await exec('mount', ['--make-private', dir]);
      await exec('mount', ['--make-shared', dir]);
      return dir;
    })();
    this.rootDir.catch(() => { this.rootDir = null; });
    return this.rootDir;
  }

  /** A warm container nobody will use: stopped and removed in the background. */
  private discard(entry: WarmEntry): void {
    this.removeLater(entry, true);
  }

  /** `podman rm` and the slot's removal, in the background; `stop` kills and unmounts first. */
  private removeLater(entry: WarmEntry, stop: boolean): void {
    const p = (async () => {
      if (stop) {
        await entry.ops.stop().catch(() => {});
        await unmountSlot(entry).catch(() => {});
      }
      await removeContainers([entry.name]).catch((e: Error) => this.o.log(`could not remove warm sandbox ${entry.name}: ${e.message}`));
      rmSync(entry.slot, { recursive: true, force: true });
    })();
    this.background.add(p);
    void p.finally(() => this.background.delete(p));
  }
}

/**
 * A warm container's ContainerOps once a build has it. remove() resolves when every process of
 * the container is dead and the build's directories are unmounted from it (nothing of the
 * sandbox can reach them any more); `podman rm` runs after, in the background.
 */
class WarmOps implements ContainerOps {
  readonly limitCpu?: (cpus: number | null) => Promise<void>;
  readonly cpuUsageUsec?: () => number | null;
  private readonly fast: FastOps;

  constructor(private readonly entry: WarmEntry, private readonly later: () => void) {
    this.fast = entry.ops;
    if (this.fast.limitCpu) this.limitCpu = this.fast.limitCpu;
    if (this.fast.cpuUsageUsec) this.cpuUsageUsec = this.fast.cpuUsageUsec;
  }

  problem(): string | null { return this.fast.problem(); }
  exec(argv: string[], env: Record<string, string>): ReturnType<ContainerOps['exec']> { return this.fast.exec(argv, env); }
  freeze(): Promise<void> { return this.fast.freeze(); }
  thaw(): Promise<void> { return this.fast.thaw(); }
  kill(): Promise<void> { return this.fast.kill(); }

  async remove(): Promise<void> {
    // Both at once, both before this resolves: every process has its SIGKILL (frozen first, so
    // none forks meanwhile; none runs its own code again), and the build's directories are
    // detached from the container's mount namespace.
    const [stopped, unmounted] = await Promise.allSettled([this.fast.stop(false), unmountSlot(this.entry)]);
    if (stopped.status === 'rejected') throw stopped.reason;
    if (unmounted.status === 'rejected') throw unmounted.reason;
    this.later();
  }
}

/** Lazily unmounts what attach() mounted on the slot (none, one or both); "not mounted" is fine. */
async function unmountSlot(entry: WarmEntry): Promise<void> {
  const mounted = new Set(mountPoints(entry.slot));
  const paths = (entry.layout === 'build' ? ['w', 'b'] : ['w']).map((d) => join(entry.slot, d)).filter((p) => mounted.has(p));
  if (paths.length > 0) await exec('umount', ['-l', ...paths]);
}

/** `BOOT_ID.PID.STARTTIME` of a process: unique on this machine across reboots and pid reuse. */
export function agentStamp(pid: number): string {
  const boot = readFileSync('/proc/sys/kernel/random/boot_id', 'utf8').trim();
  const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
  const start = stat.slice(stat.lastIndexOf(')') + 2).split(' ')[19];
  return `${boot}.${pid}.${start}`;
}

const STAMP = /^[0-9a-f-]{36}\.(\d+)\.\d+$/;

/** Whether a label value is an agent stamp (a warm container's). */
export function isWarmStamp(value: string): boolean {
  return STAMP.test(value);
}

/** Whether the process a stamp names still runs (same boot, same pid, same start time). */
export function stampAlive(stamp: string): boolean {
  const m = STAMP.exec(stamp);
  if (!m) return false;
  try {
    return agentStamp(Number(m[1])) === stamp;
  } catch {
    return false;
  }
}

/**
 * After a crash: removes the warm containers of `ownerId` whose agent process is gone (and
 * only those: another owner's, or a live agent's, are left), and their slots under `root`,
 * unmounting whatever is still mounted there. Returns how many containers it removed.
 */
export async function removeWarmLeftovers(ownerId: string, ownerLabel: string, root = join(WARM_ROOT, ownerId)): Promise<number> {
  const { stdout } = await podman(['ps', '-a', '--filter', `label=${ownerLabel}=${ownerId}`, '--filter', `label=${WARM_AGENT_LABEL}`,
    '--format', `{{.ID}} {{index .Labels "${WARM_AGENT_LABEL}"}}`], { timeoutMs: 30_000 });
  const dead = stdout.split('\n').map((l) => l.trim().split(' ')).filter(([id, stamp]) => id && !stampAlive(stamp ?? ''))
    .map(([id]) => id!);
  if (dead.length > 0) await removeContainers(dead);
  if (existsSync(root)) {
    for (const stamp of readdirSync(root)) {
      if (!stampAlive(stamp)) await removeSlotTree(join(root, stamp));
    }
    removeIfEmpty(root);
  }
  return dead.length;
}

function removeIfEmpty(dir: string): void {
  try { rmdirSync(dir); } catch { /* not empty (another agent process of this owner), or gone */ }
}

/** Unmounts every mount at or under `dir` (deepest first, lazily), then deletes it. */
async function removeSlotTree(dir: string): Promise<void> {
  for (const m of mountPoints(dir).sort((a, b) => b.length - a.length)) {
    await exec('umount', ['-l', m]).catch((e: unknown) => { throw new Error(`could not unmount ${m}: ${errorText(e)}`); });
  }
  rmSync(dir, { recursive: true, force: true });
}

/** Mount points of this mount namespace at or under `dir`. */
function mountPoints(dir: string): string[] {
  const out: string[] = [];
  for (const line of readFileSync('/proc/self/mountinfo', 'utf8').split('\n')) {
    const field = line.split(' ')[4];
    if (!field) continue;
    const p = field.replace(/\\([0-7]{3})/g, (_, o: string) => String.fromCharCode(parseInt(o, 8)));
    if (p === dir || p.startsWith(`${dir}/`)) out.push(p);
  }
  return [...new Set(out)];
}

function short(id: string): string {
  return id.slice(0, 12);
}

function errorText(e: unknown): string {
  const x = e as { stderr?: string; message?: string };
  return (x.stderr?.trim() || x.message || String(e)).split('\n')[0]!;
}
