#!/usr/bin/env node
// `node bench/trivial-ab.mjs ROOT... [ROUNDS]`: vs-buildbot's throughput workload (200 `trivial`
// builds forced by 8 concurrent clients onto 4 real `crowdbake worker --executor host`
// processes) on a farm of each ROOT (a built checkout, as for log-throughput-ab.mjs), all
// started at once and used in turn, ROUNDS bursts each (default 6), so that the machine's other
// load falls on every side alike. Prints each side's median builds/s and the master's and the
// workers' CPU per build. BENCH_AB_WORKERS sets the number of workers (default 4).
import { setTimeout as sleep } from 'node:timers/promises';

const args = process.argv.slice(2);
const roots = args.filter((a) => !/^\d+$/.test(a));
const rounds = Number(args.find((a) => /^\d+$/.test(a)) ?? 6);
const WORKERS = Number(process.env.BENCH_AB_WORKERS ?? 4);
const BUILDS = 200;
const SUBMITTERS = 8;
if (roots.length === 0) { console.error('usage: node bench/trivial-ab.mjs ROOT... [ROUNDS]'); process.exit(2); }
const median = (a) => { const s = [...a].sort((x, y) => x - y); const m = s.length >> 1; return s.length % 2 ? s[m] : (s[m - 1] + s[m]) / 2; };
const sides = [];
try {
  for (const root of roots) {
    const farmLib = await import(`${root}/dist/bench/lib/crowdbake-farm.js`);
    const procs = await import(`${root}/dist/bench/lib/procs.js`);
    const names = Array.from({ length: WORKERS }, (_, i) => `w${i + 1}`);
    const farm = await farmLib.startFarm(names);
    const side = { root, farm, farmLib, procs, workers: [], rates: [], master: [], agents: [] };
    sides.push(side);
    for (const n of names) side.workers.push(await farm.startWorker(n));
    await farm.waitWorkers(WORKERS);
    await farmLib.submitAll(farm.force, 'trivial', 20, 2); // warm-up
    await farm.drained(60_000);
  }
  for (let r = 0; r < rounds; r++) {
    for (const s of r % 2 ? [...sides].reverse() : sides) {
      const cpu = () => [s.procs.cpuMsOf(s.farm.pid), s.workers.reduce((a, w) => a + s.procs.cpuMsOf(w.pid), 0)];
      const cpu0 = cpu();
      const start = Date.now();
      await s.farmLib.submitAll(s.farm.force, 'trivial', BUILDS, SUBMITTERS);
      await s.farm.drained(300_000, 10);
      const end = await s.farm.lastFinishedAt(BUILDS);
      const cpu1 = cpu();
      s.rates.push(BUILDS / ((end - start) / 1000));
      s.master.push((cpu1[0] - cpu0[0]) / BUILDS);
      s.agents.push((cpu1[1] - cpu0[1]) / BUILDS);
      await sleep(500);
    }
  }
  for (const s of sides) {
    console.log(`${s.root}: ${median(s.rates).toFixed(1)} builds/s (${s.rates.map((x) => x.toFixed(0)).join(' ')}); `
      + `master ${median(s.master).toFixed(2)} ms, workers ${median(s.agents).toFixed(2)} ms CPU per build`);
  }
} finally {
  for (const s of sides) await s.farm.stop();
  for (const s of sides) await s.procs.stopEverything();
}
