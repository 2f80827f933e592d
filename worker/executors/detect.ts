import type { ExecutorKind } from '../../protocol/build-spec.js';
import { ContainerExecutor } from './container.js';
import type { Executor } from './executor.js';
import { HostExecutor } from './host.js';

export type WantedExecutor = 'auto' | 'container' | 'vm' | 'host';

export interface DetectedExecutors {
  /** Executors that work here, in order of preference. */
  executors: Executor[];
  /** Executors that were considered but cannot run here: kind → reason. */
  unavailable: Partial<Record<ExecutorKind, string>>;
}

const VM_MISSING = 'the vm executor is not implemented yet';

/**
 * Which executors this worker offers. 'auto' offers the isolated ones that work (container
 * today); the host executor is never offered unless asked for explicitly.
 */
export async function detectExecutors(ownerId: string, wanted: WantedExecutor): Promise<DetectedExecutors> {
  const result: DetectedExecutors = { executors: [], unavailable: {} };
  const consider = async (executor: Executor): Promise<void> => {
    const a = await executor.isAvailable();
    if (a.ok) result.executors.push(executor);
    else result.unavailable[executor.kind] = a.reason;
  };
  switch (wanted) {
    case 'auto':
      await consider(new ContainerExecutor({ ownerId }));
      result.unavailable.vm = VM_MISSING;
      break;
    case 'container':
      await consider(new ContainerExecutor({ ownerId }));
      break;
    case 'vm':
      result.unavailable.vm = VM_MISSING;
      break;
    case 'host':
      await consider(new HostExecutor());
      break;
  }
  return result;
}
