#!/usr/bin/env node
// `node bench/log-machine-cpu.mjs [BUILDS]`: where a 20 MB log's CPU goes, all of it. On a farm
// of this checkout (built: dist/; a `crowdbake master` and one `crowdbake worker --executor
// host`, as `log-throughput`), BUILDS `loud` builds (default 8) one at a time, each printing:
// its rate (the master's finishedAt - queuedAt), how busy the whole machine was meanwhile (from
// the request to the poll that saw the build finished, /proc/stat), and the CPU of the master,
// the worker, the step's processes (the worker's reaped children: `sh`, `yes`, `head`) and this
// script's polls (every 50 ms).
import { readFileSync } from 'node:fs';
import { setTimeout as sleep } from 'node:timers/promises';

const builds = Number(process.argv[2] ?? 8);
const { startFarm } = await import('../dist/bench/lib/crowdbake-farm.js');
const procs = await import('../dist/bench/lib/procs.js');
/** User + system time of a process's reaped children, in ms (clock ticks of 10 ms). */
const childrenMs = (pid) => {
  const t = readFileSync(`/proc/${pid}/stat`, 'utf8');
  const f = t.slice(t.lastIndexOf(')') + 2).split(' ');
  return (Number(f[13]) + Number(f[14])) * 10;
};
/** The machine's busy and total time so far, in clock ticks. */
const machine = () => {
  const f = readFileSync('/proc/stat', 'utf8').split('\n')[0].trim().split(/\s+/).slice(1).map(Number);
  const total = f.reduce((a, b) => a + b, 0);
  return { busy: total - f[3] - f[4], total }; // idle, iowait
};
const farm = await startFarm(['w1']);
try {
  const worker = await farm.startWorker('w1');
  await farm.waitWorkers(1);
  for (let i = 0; i < 3; i++) await farm.waitFinished(await farm.force('trivial'));
  await farm.waitFinished(await farm.force('loud'), 120_000, 50); // warm-up
  for (let i = 0; i < builds; i++) {
    await sleep(300);
    const m0 = machine();
    const cpu0 = { master: procs.cpuMsOf(farm.pid), worker: procs.cpuMsOf(worker.pid), steps: childrenMs(worker.pid), self: process.cpuUsage() };
    const b = await farm.waitFinished(await farm.force('loud'), 120_000, 50);
    const m1 = machine();
    const self = process.cpuUsage(cpu0.self);
    const ms = Date.parse(b.finishedAt) - Date.parse(b.queuedAt);
    console.log(`${(20_000 / ms).toFixed(0)} MB/s (${ms} ms); machine ${(100 * (m1.busy - m0.busy) / (m1.total - m0.total)).toFixed(0)} % busy of ${(m1.busy - m0.busy) * 10} ms; `
      + `master ${(procs.cpuMsOf(farm.pid) - cpu0.master).toFixed(0)}, worker ${(procs.cpuMsOf(worker.pid) - cpu0.worker).toFixed(0)}, `
      + `step ${childrenMs(worker.pid) - cpu0.steps}, polls ${((self.user + self.system) / 1000).toFixed(0)} ms of CPU`);
  }
} finally {
  await farm.stop();
  await procs.stopEverything();
}
