import { homedir } from 'node:os';
import { join } from 'node:path';
import type { ExecutorKind } from '../../protocol/build-spec.js';
import { ContainerExecutor } from './container.js';
import type { Executor } from './executor.js';
import { HostExecutor } from './host.js';
import { VmExecutor } from './vm/vm.js';

export type WantedExecutor = 'auto' | 'container' | 'vm' | 'host';

export interface DetectedExecutors {
  /** Executors that work here, in order of preference. */
  executors: Executor[];
  /** Executors that were considered but cannot run here: kind → reason. */
  unavailable: Partial<Record<ExecutorKind, string>>;
}

export interface DetectOptions {
  /** The worker's data dir; the vm executor caches its guest kernel and initramfs in `<dataDir>/vm`. Default: `$XDG_CACHE_HOME/crowdbake` or `~/.cache/crowdbake`. */
  dataDir?: string;
  /**
   * The volunteer's directory of base files (`rootfs:NAME.tar`, `vm:NAME.qcow2`): the only
   * place a builder's base may name a file of this machine. Default `<dataDir>/bases`.
   */
  basesDir?: string;
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
  const consider = async (executor: Executor): Promise<void> => {
    const a = await executor.isAvailable();
    if (a.ok) result.executors.push(executor);
    else result.unavailable[executor.kind] = a.reason;
  };
  const dataDir = options.dataDir ?? defaultCacheDir();
  const basesDir = options.basesDir ?? join(dataDir, 'bases');
  const vm = (): VmExecutor => new VmExecutor({ ownerId, cacheDir: join(dataDir, 'vm'), basesDir });
  switch (wanted) {
    case 'auto':
      await consider(new ContainerExecutor({ ownerId, basesDir }));
      await consider(vm());
      break;
    case 'container':
      await consider(new ContainerExecutor({ ownerId, basesDir }));
      break;
    case 'vm':
      await consider(vm());
      break;
    case 'host':
      await consider(new HostExecutor());
      break;
  }
  return result;
}
