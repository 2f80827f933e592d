#!/usr/bin/env node
// `node bench/log-throughput-ab.mjs ROOT... [ROUNDS]`: the log-throughput build (one step
// printing 20 MB) on a farm of each ROOT (a built checkout: ROOT/dist, ROOT/bin), all started
// at once and used in turn, ROUNDS builds each (default 12), so that the machine's other load
// falls on every side alike. Prints each side's median MB/s and master / worker CPU per build.
// Build an older commit for it with:
//   mkdir /tmp/old && git archive COMMIT | tar -x -C /tmp/old && ln -s "$PWD/node_modules" /tmp/old/ && (cd /tmp/old && npx tsc -p tsconfig.json)
import { setTimeout as sleep } from 'node:timers/promises';
// CPU time as this checkout counts it (per thread, in ns), for every side alike.
import { cpuMsOf } from '../dist/bench/lib/procs.js';

const args = process.argv.slice(2);
const roots = args.filter((a) => !/^\d+$/.test(a));
const rounds = Number(args.find((a) => /^\d+$/.test(a)) ?? 12);
if (roots.length === 0) { console.error('usage: node bench/log-throughput-ab.mjs ROOT... [ROUNDS]'); process.exit(2); }
const LOG = 200_000 * 100;
const median = (a) => { const s = [...a].sort((x, y) => x - y); const m = s.length >> 1; return s.length % 2 ? s[m] : (s[m - 1] + s[m]) / 2; };
const sides = [];
/** The build's view once finished, polled every 50 ms here (not by each side's own farm code, which may differ between commits). */
async function waitFinished(farm, id) {
  const end = Date.now() + 120_000;
  for (;;) {
    const b = await (await fetch(`${farm.url}/api/v1/builds/${id}`)).json();
    if (b.state === 'finished') return b;
    if (Date.now() > end) throw new Error(`build ${id} did not finish within 120 s`);
    await sleep(50);
  }
}
try {
  for (const root of roots) {
    const { startFarm } = await import(`${root}/dist/bench/lib/crowdbake-farm.js`);
    const procs = await import(`${root}/dist/bench/lib/procs.js`);
    const farm = await startFarm(['w1']);
    const side = { root, farm, procs, worker: null, rates: [], master: [], agent: [] };
    sides.push(side);
    side.worker = await farm.startWorker('w1');
    await farm.waitWorkers(1);
    for (let i = 0; i < 3; i++) await farm.waitFinished(await farm.force('trivial'));
    await farm.waitFinished(await farm.force('loud'), 120_000); // warm-up
  }
  for (let r = 0; r < rounds; r++) {
    for (const s of r % 2 ? [...sides].reverse() : sides) {
      const cpu0 = [cpuMsOf(s.farm.pid), cpuMsOf(s.worker.pid)];
      const id = await s.farm.force('loud');
      const b = await waitFinished(s.farm, id);
      s.master.push(cpuMsOf(s.farm.pid) - cpu0[0]);
      s.agent.push(cpuMsOf(s.worker.pid) - cpu0[1]);
      if (b.result !== 'success') throw new Error(`${s.root}: build ${id} ended ${b.result}: ${b.message}`);
      const size = (await (await fetch(`${s.farm.url}/api/v1/builds/${id}/log`)).text()).length;
      if (size < LOG) throw new Error(`${s.root}: build ${id}'s log has ${size} bytes`);
      s.rates.push(LOG / 1e6 / ((Date.parse(b.finishedAt) - Date.parse(b.queuedAt)) / 1000));
      await sleep(200);
    }
  }
  for (const s of sides) {
    console.log(`${s.root}: ${median(s.rates).toFixed(0)} MB/s (${s.rates.map((x) => x.toFixed(0)).join(' ')}); `
      + `master ${median(s.master).toFixed(1)} ms (${s.master.map((x) => x.toFixed(0)).join(' ')}); worker ${median(s.agent).toFixed(1)} ms (${s.agent.map((x) => x.toFixed(0)).join(' ')}) CPU per build`);
  }
} finally {
  for (const s of sides) await s.farm.stop();
  for (const s of sides) await s.procs.stopEverything();
}
