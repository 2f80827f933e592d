#!/usr/bin/env node
// `npm run bench [scenario ...]`: builds, runs each scenario in bench/ (dist/bench/<name>.js
// exporting run()), and writes bench/results/<date>-<commit>.json and bench/results/latest.md.
import { execFileSync, spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, writeFileSync } from 'node:fs';
import { cpus, totalmem } from 'node:os';
import { join } from 'node:path';

const root = new URL('..', import.meta.url).pathname;
const SCENARIOS = ['executor-overhead', 'idle-freeze', 'vm-boot', 'buildbot-worker', 'dashboard-paint'];
const wanted = process.argv.slice(2).length ? process.argv.slice(2) : SCENARIOS;
for (const w of wanted) if (!SCENARIOS.includes(w)) { console.error(`unknown scenario "${w}" (${SCENARIOS.join(', ')})`); process.exit(2); }

if (spawnSync('npm', ['run', '--silent', 'build'], { cwd: root, stdio: 'inherit' }).status !== 0) process.exit(1);
const git = (...a) => { try { return execFileSync('git', a, { cwd: root }).toString().trim(); } catch { return 'unknown'; } };
const machine = { cores: cpus().length, cpu: cpus()[0]?.model ?? 'unknown', memoryGiB: Math.round(totalmem() / 1024 ** 3), node: process.version };
const run = { date: new Date().toISOString(), commit: git('rev-parse', '--short', 'HEAD'), dirty: git('status', '--porcelain') !== '', machine, scenarios: {} };

for (const name of wanted) {
  const file = join(root, 'dist', 'bench', `${name}.js`);
  if (!existsSync(file)) { console.error(`${name}: ${file} is missing`); continue; }
  console.log(`\n== ${name}`);
  try {
    const results = await (await import(file)).run();
    run.scenarios[name] = results;
    for (const r of results) console.log(`  ${r.name}: ${Number(r.value.toFixed(2))} ${r.unit}${r.goal ? `  (goal ${r.goal})` : ''}${r.note ? `  — ${r.note}` : ''}`);
  } catch (e) {
    console.error(`  failed: ${e.stack ?? e}`);
    run.scenarios[name] = [{ name: 'failed', value: NaN, unit: '', note: String(e.message ?? e) }];
  }
}

mkdirSync(join(root, 'bench', 'results'), { recursive: true });
const stamp = run.date.slice(0, 16).replace(/[:T]/g, '-');
writeFileSync(join(root, 'bench', 'results', `${stamp}-${run.commit}.json`), `${JSON.stringify(run, null, 2)}\n`);
const lines = [
  `# Latest bench results`, '',
  `${run.date} · commit ${run.commit}${run.dirty ? ' (with uncommitted changes)' : ''} · ${machine.cores} cores (${machine.cpu}) · ${machine.memoryGiB} GiB · Node ${machine.node}`, '',
  `Command: \`npm run bench${process.argv.slice(2).length ? ` -- ${process.argv.slice(2).join(' ')}` : ''}\``, '',
  '| scenario | measure | value | goal | note |', '|---|---|---|---|---|',
];
for (const [name, results] of Object.entries(run.scenarios)) {
  for (const r of results) lines.push(`| ${name} | ${r.name} | ${Number.isFinite(r.value) ? `${Number(r.value.toFixed(2))} ${r.unit}` : 'failed'} | ${r.goal ?? ''} | ${r.note ?? ''} |`);
}
writeFileSync(join(root, 'bench', 'results', 'latest.md'), `${lines.join('\n')}\n`);
console.log(`\nwrote bench/results/${stamp}-${run.commit}.json and bench/results/latest.md`);
process.exit(0);
