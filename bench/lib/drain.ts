import { startFarm, startSimFleet, submitAll } from './crowdbake-farm.js';
import { cpuMsOf, memoryOf, sampleMemory, wallMs } from './procs.js';

export interface DrainResult {
  workers: number;
  queued: number;
  /** Builds per second from `go` to the last one finished. */
  rate: number;
  /** Master CPU (user + system) per build while draining. */
  masterCpuMsPerBuild: number;
  /** Builds per second accepted by POST while queueing (8 submitters). */
  submitRate: number;
  /** Master RSS (MiB): idle with the workers connected, with the queue full, peak while draining. */
  rssIdle: number;
  rssQueued: number;
  rssPeak: number;
}

/**
 * One fresh master and `workers` SIMULATED workers (held back); `queued` trivial builds are
 * queued by 8 concurrent submitters; then every worker starts accepting at once and the
 * queue drains. The clock runs from that moment to the last build's `finishedAt`.
 */
export async function measureDrain(workers: number, queued: number): Promise<DrainResult> {
  const names = Array.from({ length: workers }, (_, i) => `sim-${i + 1}`);
  const farm = await startFarm(names);
  try {
    const fleet = await startSimFleet(farm, names);
    try {
      const rssIdle = memoryOf(farm.pid).rss;
      const s0 = wallMs();
      await submitAll(farm.force, 'trivial', queued, 8);
      const submitRate = queued / ((wallMs() - s0) / 1000);
      const rssQueued = memoryOf(farm.pid).rss;
      const sampler = sampleMemory(farm.pid, 20);
      const cpu0 = cpuMsOf(farm.pid);
      const t0 = wallMs();
      fleet.go();
      await farm.drained(60_000 + queued * 20, 10);
      const cpu1 = cpuMsOf(farm.pid);
      const mem = sampler.stop();
      const end = await farm.lastFinishedAt(Math.max(200, workers * 2));
      return {
        workers, queued, rate: queued / ((end - t0) / 1000), masterCpuMsPerBuild: (cpu1 - cpu0) / queued,
        submitRate, rssIdle, rssQueued, rssPeak: Math.max(mem.max, rssQueued),
      };
    } finally {
      await fleet.stop();
    }
  } finally {
    await farm.stop();
  }
}
