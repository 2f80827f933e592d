import { homedir, tmpdir } from 'node:os';
import { join } from 'node:path';
import type { EnvironmentSpec } from '../../../protocol/build-spec.js';
import type { PrepareOptions } from '../executor.js';
import { imageExists } from '../podman.js';
import { formatBytes } from '../step-support.js';
import { BaseImages } from './base-image.js';
import { describeEnvironment, parseBase } from './base-spec.js';
import { CacheIndex } from './cache-index.js';
import { evictOverBudget } from './evict.js';
import { layerKeys, layerTag } from './keys.js';
import { buildSetupLayer } from './setup-layer.js';
import { sharedBuild, type Progress } from './shared-build.js';

/**
 * Declared environments: a base image plus setup lines, each line a cached image layer keyed
 * by the base's identity and the lines up to it (keys.ts). A prepare reuses the deepest layer
 * that exists and builds only the ones after it; layers being built are shared by concurrent
 * callers in this process (shared-build.ts) and, through lock files, with other processes on
 * the machine. Every layer used is marked in CACHE_DIR/index.json; after anything was built,
 * the least recently used images beyond the budget are evicted (evict.ts).
 */

export const DEFAULT_CACHE_BUDGET_BYTES = 10 * 1024 ** 3;
const DEFAULT_SETUP_TIMEOUT_MS = 60 * 60_000;
const DEFAULT_DEBOOTSTRAP_TIMEOUT_MS = 30 * 60_000;

export interface EnvironmentCacheOptions {
  /** Labels for setup containers, e.g. "crowdbake.owner=ID". */
  containerLabels: readonly string[];
  /** Holds index.json and debootstrap's temporary roots. Default $XDG_CACHE_HOME/crowdbake/environments. */
  cacheDir?: string;
  /** Lock files shared by the workers of this machine. Default $TMPDIR/crowdbake-env-locks-UID. */
  lockDir?: string;
  /** Eviction budget for the images this cache made. Default 10 GiB. */
  budgetBytes?: number;
  /** Mirror for Debian suites. Default http://deb.debian.org/debian. */
  debianMirror?: string;
  /** Per setup line. Default 1 h. */
  setupTimeoutMs?: number;
  /** Per debootstrap. Default 30 min. */
  debootstrapTimeoutMs?: number;
  /** The volunteer's directory for `rootfs:NAME` bases (base-download.ts). Default: none. */
  basesDir?: string;
  /** Run setup lines in a user namespace (root inside = an unprivileged host id), as build steps are. */
  userNamespace?: boolean;
}

export interface PreparedEnvironment {
  /** The image to run the build in. */
  ref: string;
  /** base and setup layers, bottom up: the images this environment needs. */
  chain: string[];
  built: number;
  reused: number;
}

export function defaultCacheDir(): string {
  return join(process.env.XDG_CACHE_HOME || join(homedir(), '.cache'), 'crowdbake', 'environments');
}

export function defaultLockDir(): string {
  return join(tmpdir(), `crowdbake-env-locks-${process.getuid?.() ?? 'user'}`);
}

export class EnvironmentCache {
  readonly cacheDir: string;
  readonly lockDir: string;
  readonly budgetBytes: number;
  readonly index: CacheIndex;
  private readonly bases: BaseImages;

  constructor(private readonly o: EnvironmentCacheOptions) {
    this.cacheDir = o.cacheDir ?? defaultCacheDir();
    this.lockDir = o.lockDir ?? defaultLockDir();
    this.budgetBytes = o.budgetBytes ?? DEFAULT_CACHE_BUDGET_BYTES;
    if (!(this.budgetBytes >= 0)) throw new Error(`environment cache budget ${this.budgetBytes} must be a number of bytes >= 0`);
    this.index = new CacheIndex(this.cacheDir);
    this.bases = new BaseImages({
      lockDir: this.lockDir, tmpRoot: join(this.cacheDir, 'tmp'),
      debootstrapTimeoutMs: o.debootstrapTimeoutMs ?? DEFAULT_DEBOOTSTRAP_TIMEOUT_MS, basesDir: o.basesDir,
    });
  }

  async prepare(environment: EnvironmentSpec, progress: Progress, options: PrepareOptions = {}): Promise<PreparedEnvironment> {
    const started = Date.now();
    const what = `environment ${describeEnvironment(environment)}`;
    const spec = parseBase(environment.base, this.o.debianMirror);
    const base = await this.bases.resolve(spec, progress);
    const { setup } = environment;
    const keys = layerKeys(base.identity, setup);
    const tags = keys.slice(1).map((key) => layerTag(key));
    const chain = [base.ref, ...tags];

    // The deepest layer that exists; everything under it is already in it.
    let top = tags.length;
    while (top > 0 && !await imageExists(tags[top - 1]!)) top--;
    let built = 0;
    if (top === 0 && (await base.ensure(progress)) === 'built') built++;
    if (top > 0 && top < tags.length) progress(`${what}: setup 1..${top} reused from cache (${tags[top - 1]!})`);

    for (let i = top; i < setup.length; i++) {
      const label = `setup ${i + 1}/${setup.length}`;
      const line = setup[i]!;
      const layerStarted = Date.now();
      const outcome = await sharedBuild({
        tag: tags[i]!, lockDir: this.lockDir, what: label, progress,
        build: async (out) => {
          progress(`${label} building: ${line}`);
          const limits = options.limits ?? {};
          await buildSetupLayer({
            parent: chain[i]!, tag: tags[i]!, key: keys[i + 1]!, line, label,
            containerLabels: this.o.containerLabels,
            timeoutMs: Math.min(this.o.setupTimeoutMs ?? DEFAULT_SETUP_TIMEOUT_MS, limits.timeMs ?? Infinity),
            limits, userNamespace: this.o.userNamespace ?? false, gate: options.gate, signal: options.signal,
          }, out);
        },
      });
      if (outcome === 'built') {
        built++;
        progress(`${label} built in ${seconds(Date.now() - layerStarted)} (${tags[i]!})`);
      } else {
        progress(`${label} reused from cache (${tags[i]!}, ${outcome === 'shared' ? 'built for another build just now' : 'built by another process'})`);
      }
    }

    const ref = chain[chain.length - 1]!;
    const layers = chain.length;
    const took = seconds(Date.now() - started);
    progress(built === 0 ? `${what}: reused from cache (${ref})`
      : built === layers ? `${what}: built in ${took} (${ref})`
        : `${what}: built ${built} layer${built === 1 ? '' : 's'} in ${took}, reused ${layers - built} from cache (${ref})`);

    const used = chain.map((r, i) => ({ ref: r, parent: i === 0 ? null : chain[i - 1]! })).filter((_, i) => i > 0 || base.cached);
    if (used.length > 0) await this.index.touch(used, describeEnvironment(environment));
    if (built > 0) await this.evict(new Set(chain), progress);
    return { ref, chain, built, reused: layers - built };
  }

  /** Removes least recently used images this cache made until they fit the budget; `protect` stays. */
  async evict(protect: ReadonlySet<string>, progress: Progress): Promise<void> {
    let r;
    try {
      r = await evictOverBudget(this.index, this.budgetBytes, protect, progress);
    } catch (e) {
      // The environment is ready; a cache that could not be trimmed now is trimmed after the next build.
      progress(`environment cache: eviction failed: ${e instanceof Error ? e.message : String(e)}`);
      return;
    }
    if (r.removed.length > 0) {
      progress(`environment cache: ${formatBytes(r.after)} of ${formatBytes(this.budgetBytes)} used after evicting ${r.removed.length} image${r.removed.length === 1 ? '' : 's'}`);
    }
  }
}

function seconds(ms: number): string {
  return `${(ms / 1000).toFixed(1)} s`;
}
