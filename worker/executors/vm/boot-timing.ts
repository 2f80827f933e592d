import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { performance } from 'node:perf_hooks';
import { VmExecutor, type VmExecutorOptions } from './vm.js';

export interface BootTiming {
  /** Median of `samplesMs`. */
  medianMs: number;
  /** Per boot: from open() until the first step's output arrives on the host. */
  samplesMs: number[];
  /** Median wall time of a `true` step (command, output markers, workdir copy-out). */
  stepOverheadMs: number;
  /** "KVM" or "TCG …", as the executor describes it. */
  accel: string;
}

const BASE = { base: 'vm:busybox', setup: [] };

/**
 * Boots `runs` fresh VMs one after another (assets are built first and not counted) and
 * measures boot-to-first-command for each. For bench/: `measureBootTimes({ cacheDir, runs: 5 })`.
 */
export async function measureBootTimes(options: Partial<VmExecutorOptions> & { cacheDir: string; runs?: number }): Promise<BootTiming> {
  const executor = new VmExecutor({ ownerId: options.ownerId ?? `boot-timing-${process.pid}`, ...options });
  await executor.prepare(BASE, () => {});
  const samples: number[] = [];
  const overheads: number[] = [];
  for (let i = 0; i < (options.runs ?? 5); i++) {
    const workdir = await mkdtemp(join(tmpdir(), 'crowdbake-boot-'));
    const started = performance.now();
    const sandbox = await executor.open({ id: `boot-${process.pid}-${i}`, workdir, environment: BASE, limits: {}, network: false });
    try {
      let first: number | null = null;
      const step = (run: string, onFirst?: () => void): ReturnType<typeof sandbox.run> => sandbox.run({
        run, env: {}, timeoutMs: 60_000, signal: new AbortController().signal, onOutput: () => { onFirst?.(); },
      });
      const r = await step('echo up', () => { first ??= performance.now(); });
      if (r.exitCode !== 0 || first === null) throw new Error(`the first command failed: ${r.message ?? `exit ${r.exitCode}`}`);
      samples.push(first - started);
      for (let j = 0; j < 3; j++) {
        const t = performance.now();
        await step('true');
        overheads.push(performance.now() - t);
      }
    } finally {
      await sandbox.destroy();
      await rm(workdir, { recursive: true, force: true });
    }
  }
  return { medianMs: median(samples), samplesMs: samples, stepOverheadMs: median(overheads), accel: executor.describeAccel() };
}

function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  const mid = Math.floor(s.length / 2);
  return s.length % 2 ? s[mid]! : (s[mid - 1]! + s[mid]!) / 2;
}
