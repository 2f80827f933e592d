#!/usr/bin/env node
// `node bench/cpu-profile-top.mjs FILE.cpuprofile [N]`: the N functions with the most self
// time in a V8 CPU profile (from `node --cpu-prof`), and the same grouped by file.
import { readFileSync } from 'node:fs';

const [file, n = '25'] = process.argv.slice(2);
const prof = JSON.parse(readFileSync(file, 'utf8'));
const self = new Map();
const dt = prof.timeDeltas;
const byId = new Map(prof.nodes.map((x) => [x.id, x]));
const ticks = new Map();
for (let i = 0; i < prof.samples.length; i++) ticks.set(prof.samples[i], (ticks.get(prof.samples[i]) ?? 0) + (dt[i] ?? 0));
let total = 0;
const perFile = new Map();
for (const [id, us] of ticks) {
  const { callFrame: f } = byId.get(id);
  const key = `${f.functionName || '(anonymous)'} ${f.url.replace(/^.*\/(dist|node_modules)\//, '$1/')}:${f.lineNumber + 1}`;
  self.set(key, (self.get(key) ?? 0) + us);
  const fk = f.url ? f.url.replace(/^.*\/(dist|node_modules)\//, '$1/').replace(/^(node_modules\/(@[^/]+\/)?[^/]+).*/, '$1') : f.functionName;
  perFile.set(fk, (perFile.get(fk) ?? 0) + us);
  total += us;
}
const top = (m) => [...m].sort((a, b) => b[1] - a[1]).slice(0, Number(n));
console.log(`total ${(total / 1000).toFixed(0)} ms sampled\n\nself time by function:`);
for (const [k, us] of top(self)) console.log(`${(us / 1000).toFixed(1).padStart(8)} ms ${((100 * us) / total).toFixed(1).padStart(5)}%  ${k}`);
console.log('\nself time by file or package:');
for (const [k, us] of top(perFile)) console.log(`${(us / 1000).toFixed(1).padStart(8)} ms ${((100 * us) / total).toFixed(1).padStart(5)}%  ${k}`);
