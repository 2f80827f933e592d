import { join } from 'node:path';
import { renderPngs, type Chart } from './lib/chart.js';
import { ROOT } from './lib/crowdbake-farm.js';
import { measureDrain, type DrainResult } from './lib/drain.js';
import type { BenchResult } from './types.js';

const WORKERS = [1, 4, 16, 64];
const QUEUED = (process.env.BENCH_SCALING_QUEUED ?? '100,1000,10000').split(',').map(Number);

/**
 * How the master's cost grows: drain throughput, master CPU per build and master RSS for
 * every pair of 1/4/16/64 SIMULATED workers and 100/1,000/10,000 queued builds (a fresh master
 * each). Plots the curves to results/scaling-*.png.
 */
export async function run(): Promise<BenchResult[]> {
  const all: DrainResult[] = [];
  for (const q of QUEUED) for (const w of WORKERS) all.push(await measureDrain(w, q));
  const out: BenchResult[] = [];
  for (const d of all) {
    out.push({
      name: `scaling: ${d.workers} simulated workers, ${d.queued} queued`, value: d.rate, unit: 'builds/s',
      note: `master CPU ${d.masterCpuMsPerBuild.toFixed(2)} ms/build; RSS idle ${d.rssIdle.toFixed(0)}, queued ${d.rssQueued.toFixed(0)}, peak ${d.rssPeak.toFixed(0)} MiB; queued at ${d.submitRate.toFixed(0)}/s`,
    });
  }
  for (const q of QUEUED) {
    const row = all.filter((d) => d.queued === q);
    out.push({ name: `scaling: master RSS peak, ${q} queued, ${WORKERS.join('/')} workers`, value: Math.max(...row.map((d) => d.rssPeak)), unit: 'MiB', note: row.map((d) => d.rssPeak.toFixed(0)).join(' / ') });
  }
  const byQueue = (f: (d: DrainResult) => number) => QUEUED.map((q) => ({ label: `${q} queued`, points: all.filter((d) => d.queued === q).map((d) => [d.workers, f(d)] as [number, number]) }));
  const byWorkers = (f: (d: DrainResult) => number) => WORKERS.map((w) => ({ label: `${w} workers`, points: all.filter((d) => d.workers === w).map((d) => [d.queued, f(d)] as [number, number]) }));
  const charts: { file: string; chart: Chart }[] = [
    { file: 'scaling-throughput-vs-workers.png', chart: { title: 'Drain throughput vs simulated workers', x: 'simulated workers', y: 'builds/s', logX: true, series: byQueue((d) => d.rate) } },
    { file: 'scaling-throughput-vs-queued.png', chart: { title: 'Drain throughput vs queued builds', x: 'queued builds', y: 'builds/s', logX: true, series: byWorkers((d) => d.rate) } },
    { file: 'scaling-memory-vs-queued.png', chart: { title: 'Master RSS (peak) vs queued builds', x: 'queued builds', y: 'MiB', logX: true, series: byWorkers((d) => d.rssPeak) } },
    { file: 'scaling-cpu-vs-queued.png', chart: { title: 'Master CPU per build vs queued builds', x: 'queued builds', y: 'ms of CPU per build', logX: true, series: byWorkers((d) => d.masterCpuMsPerBuild) } },
  ];
  try {
    await renderPngs(charts.map((c) => ({ ...c, file: join(ROOT, 'bench', 'results', c.file) })));
    out.push({ name: 'scaling: plots', value: charts.length, unit: 'PNG', note: charts.map((c) => `results/${c.file}`).join(', ') });
  } catch (e) {
    out.push({ name: 'scaling: plots', value: NaN, unit: '', note: `Chromium could not render them: ${(e as Error).message}` });
  }
  return out;
}
