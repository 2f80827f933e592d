#!/usr/bin/env node
// `node bench/poll-cost.mjs [POLLS]`: what one status poll (`GET /api/v1/builds/ID`, the way
// bench/lib/crowdbake-farm.ts waitFinished asks) costs the master and the polling process in
// CPU, on a farm of this checkout (built: dist/) after one 20 MB build. Three rounds of POLLS
// (default 1,000) one after the other.
const polls = Number(process.argv[2] ?? 1000);
const { startFarm } = await import('../dist/bench/lib/crowdbake-farm.js');
const procs = await import('../dist/bench/lib/procs.js');
const farm = await startFarm(['w1']);
try {
  await farm.startWorker('w1');
  await farm.waitWorkers(1);
  const id = await farm.force('loud');
  await farm.waitFinished(id, 120_000, 50);
  for (let r = 0; r < 3; r++) {
    const master0 = procs.cpuMsOf(farm.pid);
    const self0 = process.cpuUsage();
    for (let i = 0; i < polls; i++) await (await fetch(`${farm.url}/api/v1/builds/${id}`)).json();
    const self = process.cpuUsage(self0);
    console.log(`one poll: master ${((procs.cpuMsOf(farm.pid) - master0) / polls).toFixed(3)} ms, poller ${((self.user + self.system) / 1000 / polls).toFixed(3)} ms of CPU`);
  }
} finally {
  await farm.stop();
  await procs.stopEverything();
}
