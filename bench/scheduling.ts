import { measureDrain } from './lib/drain.js';
import type { BenchResult } from './types.js';

/** Scheduling alone: 1,000 queued builds drained by 100 SIMULATED workers (real protocol, nothing run). */
export async function run(): Promise<BenchResult[]> {
  const d = await measureDrain(100, 1000);
  const note = '100 simulated workers (real WebSocket clients speaking the worker protocol, running nothing), 1 slot each';
  return [
    { name: 'scheduling: 1,000 queued builds, 100 simulated workers', value: d.rate, unit: 'builds/s', note },
    { name: 'scheduling: master CPU per build', value: d.masterCpuMsPerBuild, unit: 'ms' },
    { name: 'scheduling: builds queued through the REST API (8 submitters)', value: d.submitRate, unit: 'builds/s' },
    { name: 'scheduling: master RSS, 1,000 queued, peak while draining', value: d.rssPeak, unit: 'MiB', note: `idle ${d.rssIdle.toFixed(1)}, queued ${d.rssQueued.toFixed(1)} MiB` },
  ];
}
