import { join } from 'node:path';
import type { Executor } from './executor.js';

/** What an executor is made from: the worker's identity and its volunteer's directories. */
export interface ExecutorContext {
  /** Owner label of everything the executor creates (leftovers are found by it after a crash). */
  ownerId: string;
  /** The worker's cache dir (guest kernels, environments). */
  dataDir: string;
  /** The volunteer's directory of base files (`rootfs:NAME.tar`, `vm:NAME.qcow2`). */
  basesDir: string;
  /** Environments the container executor keeps warm (`--warm`; its default when unset). */
  warmSandboxes?: number;
  /** The worker's log, for what an executor does in the background. */
  log?: (line: string) => void;
}

export interface ExecutorEntry {
  /** The name on the wire and in builder files (protocol/executor-names.ts). */
  name: string;
  /** Offered by `--executor auto` when it works here; `host` never is. */
  auto: boolean;
  /** Loads the executor's module only when it is considered (the CLI and BuildBot mode load none). */
  create(ctx: ExecutorContext): Promise<Executor>;
}

/**
 * Every executor this worker can run, in order of preference. A new executor is its own
 * file and one line here (and its name in protocol/executor-names.ts if builder files are
 * to ask for it by name).
 */
export const EXECUTORS: readonly ExecutorEntry[] = [
  { name: 'container', auto: true, create: async (c) => new (await import('./container.js')).ContainerExecutor({ ownerId: c.ownerId, basesDir: c.basesDir, warmSandboxes: c.warmSandboxes, log: c.log }) },
  { name: 'vm', auto: true, create: async (c) => new (await import('./vm/vm.js')).VmExecutor({ ownerId: c.ownerId, cacheDir: join(c.dataDir, 'vm'), basesDir: c.basesDir }) },
  { name: 'host', auto: false, create: async () => new (await import('./host.js')).HostExecutor() },
];

/** `--executor` choices: auto, then every registered name. */
export const EXECUTOR_CHOICES: readonly string[] = ['auto', ...EXECUTORS.map((e) => e.name)];
