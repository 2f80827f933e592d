import { homedir } from 'node:os';
import { join } from 'node:path';
import type { ExecutorKind } from '../../protocol/build-spec.js';
import type { Executor } from './executor.js';
import { EXECUTOR_CHOICES, EXECUTORS, type ExecutorContext } from './registry.js';

/** `auto`, or a name in the registry (worker/executors/registry.ts). */
export type WantedExecutor = string;

export interface DetectedExecutors {
  /** Executors that work here, in order of preference. */
  executors: Executor[];
  /** Executors that were considered but cannot run here: kind → reason. */
  unavailable: Record<ExecutorKind, string>;
}

export interface DetectOptions {
  /** The worker's data dir; the vm executor caches its guest kernel and initramfs in `<dataDir>/vm`. Default: `$XDG_CACHE_HOME/crowdbake` or `~/.cache/crowdbake`. */
  dataDir?: string;
  /**
   * The volunteer's directory of base files (`rootfs:NAME.tar`, `vm:NAME.qcow2`): the only
   * place a builder's base may name a file of this machine. Default `<dataDir>/bases`.
   */
  basesDir?: string;
  /** See ExecutorContext.warmSandboxes. */
  warmSandboxes?: number;
  log?: (line: string) => void;
}

/** `$XDG_CACHE_HOME/crowdbake`, else `~/.cache/crowdbake`. */
export function defaultCacheDir(): string {
  const xdg = process.env.XDG_CACHE_HOME;
  return join(xdg && xdg.startsWith('/') ? xdg : join(homedir(), '.cache'), 'crowdbake');
}

/**
 * Which executors this worker offers. 'auto' offers the isolated ones that work (container
 * first, then vm); the host executor is never offered unless asked for explicitly.
 */
export async function detectExecutors(ownerId: string, wanted: WantedExecutor, options: DetectOptions = {}): Promise<DetectedExecutors> {
  const result: DetectedExecutors = { executors: [], unavailable: {} };
  const dataDir = options.dataDir ?? defaultCacheDir();
  const ctx: ExecutorContext = { ownerId, dataDir, basesDir: options.basesDir ?? join(dataDir, 'bases'), warmSandboxes: options.warmSandboxes, log: options.log };
  const entries = wanted === 'auto' ? EXECUTORS.filter((e) => e.auto) : EXECUTORS.filter((e) => e.name === wanted);
  if (entries.length === 0) throw new Error(`no executor "${wanted}" (this worker has ${EXECUTOR_CHOICES.join(', ')})`);
  for (const entry of entries) {
    const executor = await entry.create(ctx);
    const a = await executor.isAvailable();
    if (a.ok) result.executors.push(executor);
    else result.unavailable[executor.kind] = a.reason;
  }
  return result;
}
