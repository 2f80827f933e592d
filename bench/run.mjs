#!/usr/bin/env node
// `npm run bench [scenario ...]` (or `-- --latest`, below): builds, runs each scenario (dist/bench/<name>.js exporting
// run()) in its own process group with a time budget, writes bench/results/<date>-<commit>.json,
// and rewrites bench/results/latest.md from the newest result of every scenario in results/.
import { execFileSync, spawn, spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { cpus, tmpdir, totalmem } from 'node:os';
import { join } from 'node:path';

/** Every scenario, in run order. Add one: a bench/<name>.ts exporting run(), and a line here. */
const SCENARIOS = [
  { name: 'executor-overhead', budgetMin: 5 },
  { name: 'idle-freeze', budgetMin: 5 },
  { name: 'vm-boot', budgetMin: 3 },
  { name: 'buildbot-worker', budgetMin: 6 },
  { name: 'vs-buildbot', budgetMin: 15 },
  { name: 'scheduling', budgetMin: 2 },
  { name: 'scaling', budgetMin: 12 },
  { name: 'scale', budgetMin: 40 },
  { name: 'dashboard-paint', budgetMin: 4 },
  { name: 'log-throughput', budgetMin: 4 },
  { name: 'provenance', budgetMin: 5 },
];

const root = new URL('..', import.meta.url).pathname;
const resultsDir = join(root, 'bench', 'results');
const names = SCENARIOS.map((s) => s.name);
const args = process.argv.slice(2);
// `npm run bench -- --latest`: only rewrites latest.md from results/ (after a result file was removed or restored).
if (args.length === 1 && args[0] === '--latest') {
  writeLatest();
  console.log('wrote bench/results/latest.md');
  process.exit(0);
}
const wanted = args.length ? args : names;
for (const w of wanted) if (!names.includes(w)) { console.error(`unknown scenario "${w}" (${names.join(', ')})`); process.exit(2); }

if (spawnSync('npm', ['run', '--silent', 'build'], { cwd: root, stdio: 'inherit' }).status !== 0) process.exit(1);
const git = (...a) => { try { return execFileSync('git', a, { cwd: root }).toString().trim(); } catch { return 'unknown'; } };
const machine = { cores: cpus().length, cpu: cpus()[0]?.model ?? 'unknown', memoryGiB: Math.round(totalmem() / 1024 ** 3), node: process.version };
const run = { date: new Date().toISOString(), commit: git('rev-parse', '--short', 'HEAD'), dirty: git('status', '--porcelain', '--untracked-files=no') !== '', machine, scenarios: {} };

// The scenario running now; Ctrl-C (or SIGTERM) stops it and everything it started.
let current = null;
let interrupted = false;
for (const sig of ['SIGINT', 'SIGTERM']) {
  process.on(sig, () => {
    interrupted = true;
    console.error(`\n${sig}: stopping ${current ? `scenario ${current.name}` : 'the bench'}`);
    if (current) stopGroup(current.child);
    else process.exit(130);
  });
}

const started = Date.now();
for (const name of wanted) {
  if (interrupted) break;
  const { budgetMin } = SCENARIOS.find((s) => s.name === name);
  console.log(`\n== ${name} (at most ${budgetMin} min)`);
  const t0 = Date.now();
  const results = await runScenario(name, budgetMin * 60_000);
  run.scenarios[name] = results;
  for (const r of results) console.log(`  ${r.name}: ${fmt(r)}${r.goal ? `  (goal ${r.goal})` : ''}${r.note ? `  — ${r.note}` : ''}`);
  console.log(`  (${((Date.now() - t0) / 1000).toFixed(0)} s)`);
}

mkdirSync(resultsDir, { recursive: true });
const stamp = run.date.slice(0, 16).replace(/[:T]/g, '-');
if (Object.keys(run.scenarios).length) writeFileSync(join(resultsDir, `${stamp}-${run.commit}.json`), `${JSON.stringify(run, null, 2)}\n`);
writeLatest();
console.log(`\nwrote bench/results/${stamp}-${run.commit}.json and bench/results/latest.md in ${((Date.now() - started) / 60_000).toFixed(1)} min`);
process.exit(interrupted ? 130 : 0);

/** Runs one scenario in a child process group; kills the group when the budget runs out. */
function runScenario(name, budgetMs) {
  const out = join(tmpdir(), `crowdbake-bench-${process.pid}-${name}.json`);
  rmSync(out, { force: true });
  return new Promise((resolve) => {
    const child = spawn(process.execPath, [join(root, 'bench', 'run-scenario.mjs'), name, out], { cwd: root, stdio: 'inherit', detached: true });
    current = { name, child };
    let why = null;
    const timer = setTimeout(() => { why = `did not finish within its budget of ${budgetMs / 60_000} min`; stopGroup(child); }, budgetMs);
    child.on('exit', (code, signal) => {
      clearTimeout(timer);
      current = null;
      // Whatever the scenario left behind in its process group goes too.
      try { process.kill(-child.pid, 'SIGKILL'); } catch { /* the group is gone */ }
      let results = [];
      if (existsSync(out)) {
        results = JSON.parse(readFileSync(out, 'utf8'));
        rmSync(out, { force: true });
        if (!why && (code === 0 || results.some((r) => r.name === 'failed'))) return resolve(results);
      }
      why ??= interrupted ? 'interrupted' : `exited with ${signal ?? code}`;
      console.error(`  ${name} failed: ${why}${results.length ? ` (keeping the ${results.length} figures measured before)` : ''}`);
      resolve([...results, { name: 'failed', value: NaN, unit: '', note: why }]);
    });
  });
}

/** SIGTERM to the scenario's process group (it stops what it started), SIGKILL 20 s later. */
function stopGroup(child) {
  try { process.kill(-child.pid, 'SIGTERM'); } catch { return; }
  setTimeout(() => { try { process.kill(-child.pid, 'SIGKILL'); } catch { /* gone */ } }, 20_000).unref();
}

function fmt(r) {
  return Number.isFinite(r.value) ? `${Number(r.value.toFixed(2))} ${r.unit}` : 'failed';
}

/** latest.md: for every scenario, the rows of the newest result file that has it. */
function writeLatest() {
  const runs = readdirSync(resultsDir).filter((f) => /^\d{4}-.*\.json$/.test(f))
    .map((f) => { try { return JSON.parse(readFileSync(join(resultsDir, f), 'utf8')); } catch { return null; } })
    .filter((r) => r && r.scenarios).sort((a, b) => a.date.localeCompare(b.date));
  // A run where a scenario only failed does not hide that scenario's last good figures; it is listed below the table.
  const latest = new Map();
  const failures = new Map();
  for (const r of runs) {
    for (const [name, results] of Object.entries(r.scenarios)) {
      const onlyFailed = results.every((x) => x.name === 'failed');
      if (onlyFailed && latest.has(name)) failures.set(name, `${r.date.slice(0, 16).replace('T', ' ')} (${r.commit}): ${results[0]?.note ?? 'failed'}`);
      else { latest.set(name, { run: r, results }); failures.delete(name); }
    }
  }
  const order = [...names, ...[...latest.keys()].filter((n) => !names.includes(n))];
  const lines = [
    '# Latest bench results', '',
    'The newest result of every scenario (`npm run bench` rewrites this file from `results/*.json`;',
    'running one scenario replaces only its rows). Each row names the date, commit and machine it was measured on.', '',
    '| scenario | measure | value | goal | note | date | commit | machine |', '|---|---|---|---|---|---|---|---|',
  ];
  for (const name of order) {
    const l = latest.get(name);
    if (!l) continue;
    const m = l.run.machine;
    const where = `${m.cores} cores (${m.cpu}), ${m.memoryGiB} GiB, Node ${m.node}`;
    for (const r of l.results) {
      const value = Number.isFinite(r.value) ? `${Number(r.value.toFixed(2))} ${r.unit}` : 'failed';
      lines.push(`| ${name} | ${esc(r.name)} | ${value} | ${esc(r.goal ?? '')} | ${esc(r.note ?? '')} | ${l.run.date.slice(0, 16).replace('T', ' ')} | ${l.run.commit}${l.run.dirty ? '+' : ''} | ${where} |`);
    }
  }
  lines.push('', '`+` after a commit: measured with uncommitted changes.');
  for (const [name, why] of failures) lines.push('', `${name} failed in a later run, ${why}; its rows above are from the run before.`);
  writeFileSync(join(resultsDir, 'latest.md'), `${lines.join('\n')}\n`);
}

function esc(s) {
  return String(s).replace(/\|/g, '\\|').replace(/\n/g, ' ');
}
