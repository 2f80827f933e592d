#!/usr/bin/env node
// `node bench/cpu-profile-windows.mjs WORKER.cpuprofile MASTER.cpuprofile [N] [BUILDS]`: self time
// by function of both processes inside the worker's busy spells longer than 60 ms (the loud
// builds of `log-throughput`; the last BUILDS of them, default 5), per build. V8 stamps samples
// with the monotonic clock, which both processes share, so the master's samples are cut by the
// worker's spells. The whole-run summary (bench/cpu-profile-top.mjs) mixes in start-up, the
// trivial builds and the bench's log downloads.
import { readFileSync } from 'node:fs';

const [wf, mf, n = '25', builds = '5'] = process.argv.slice(2);
if (!wf || !mf) { console.error('usage: node bench/cpu-profile-windows.mjs WORKER.cpuprofile MASTER.cpuprofile [N] [BUILDS]'); process.exit(2); }
const load = (f) => {
  const p = JSON.parse(readFileSync(f, 'utf8'));
  const byId = new Map(p.nodes.map((x) => [x.id, x]));
  const out = [];
  let t = p.startTime;
  for (let i = 0; i < p.samples.length; i++) {
    t += p.timeDeltas[i];
    out.push({ t, dt: p.timeDeltas[i + 1] ?? 0, frame: byId.get(p.samples[i]).callFrame });
  }
  return out;
};
const W = load(wf);
const M = load(mf);
const spells = [];
let cur = null;
for (const x of W) {
  if (x.frame.functionName === '(idle)' || x.frame.functionName === '(program)') continue;
  if (cur && x.t - cur.end < 30_000) { cur.end = x.t; cur.busy += x.dt; } else { if (cur) spells.push(cur); cur = { start: x.t, end: x.t, busy: x.dt }; }
}
if (cur) spells.push(cur);
const loud = spells.filter((b) => b.end - b.start > 60_000 && b.busy > 40_000).slice(-Number(builds));
console.log(`worker spells (ms long / busy): ${loud.map((b) => `${((b.end - b.start) / 1000).toFixed(0)}/${(b.busy / 1000).toFixed(0)}`).join(' ')}`);
const inside = (t) => loud.some((b) => t >= b.start && t <= b.end);
for (const [name, samples] of [['worker', W], ['master', M]]) {
  const self = new Map();
  let busy = 0;
  for (const x of samples) {
    if (!inside(x.t) || x.frame.functionName === '(idle)') continue;
    const key = `${x.frame.functionName || '(anonymous)'} ${x.frame.url.replace(/^.*\/(dist|node_modules)\//, '$1/')}:${x.frame.lineNumber + 1}`;
    self.set(key, (self.get(key) ?? 0) + x.dt);
    busy += x.dt;
  }
  console.log(`\n${name}: ${(busy / 1000 / loud.length).toFixed(1)} ms busy per build`);
  for (const [k, us] of [...self].sort((a, b) => b[1] - a[1]).slice(0, Number(n))) {
    console.log(`${(us / 1000 / loud.length).toFixed(2).padStart(8)} ms ${((100 * us) / busy).toFixed(1).padStart(5)}%  ${k}`);
  }
}
