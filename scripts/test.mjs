#!/usr/bin/env node
// The test command: type-check and build, lint the layer rules, then run every compiled
// *.test.js with node's test runner. The last line printed is always "N passed, N failed".
// Usage: node scripts/test.mjs [--group NAME[,NAME]] [--list-groups] [substring ...]
//   substrings: only test files whose path contains one; groups: scripts/test-groups.mjs
//   (`--group unit` skips the system packages, PostgreSQL and lint: npm run test:unit)
import { spawnSync } from 'node:child_process';
import { mkdtempSync, readdirSync, readFileSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, relative } from 'node:path';

import { GROUPS, groupOf } from './test-groups.mjs';

const root = new URL('..', import.meta.url).pathname;
const args = process.argv.slice(2);
const groupArg = args.indexOf('--group');
const groups = groupArg >= 0 ? (args.splice(groupArg, 2)[1] ?? '').split(',').filter(Boolean) : [];
const listGroups = args.includes('--list-groups');
const filters = args.filter((a) => a !== '--list-groups');
for (const g of groups) {
  if (!(g in GROUPS)) { console.log(`test: no group "${g}" (groups: ${Object.keys(GROUPS).join(', ')})`); console.log('0 passed, 1 failed, 0 skipped'); process.exit(2); }
}
const unitOnly = groups.length > 0 && groups.every((g) => g === 'unit');
let failedPhases = 0;

function phase(name, cmd, args) {
  console.log(`\n== ${name}: ${cmd} ${args.join(' ')}`);
  const r = spawnSync(cmd, args, { cwd: root, stdio: 'inherit' });
  if (r.status !== 0) { console.log(`== ${name} failed (exit ${r.status})`); failedPhases++; }
  return r.status === 0;
}

function findTests(dir) {
  const out = [];
  for (const name of readdirSync(dir)) {
    const p = join(dir, name);
    if (statSync(p).isDirectory()) out.push(...findTests(p));
    else if (name.endsWith('.test.js')) out.push(p);
  }
  return out;
}

// System packages the tests drive for real. Missing ones are installed when we may (root with
// apt-get, as on CI), otherwise the run stops here and says what to install.
const NEEDED = {
  podman: 'podman', runc: 'runc', git: 'git', chromium: 'chromium', debootstrap: 'debootstrap', 'qemu-system-x86_64': 'qemu-system-x86',
  cpio: 'cpio', Xvfb: 'xvfb', xdotool: 'xdotool', xinput: 'xinput', xprintidle: 'xprintidle', sway: 'sway', swayidle: 'swayidle', wtype: 'wtype', foot: 'foot', mutter: 'mutter', 'dbus-daemon': 'dbus', gdbus: 'libglib2.0-bin', file: 'file', pg_ctlcluster: 'postgresql', buildbot: 'buildbot', 'buildbot-worker': 'buildbot-worker', bzip2: 'bzip2', diffoscope: 'diffoscope-minimal', bwrap: 'bubblewrap', ip: 'iproute2',
};
const missing = unitOnly || listGroups ? [] : Object.entries(NEEDED).filter(([bin]) => spawnSync('sh', ['-c', `command -v ${bin}`]).status !== 0).map(([, pkg]) => pkg);
if (!unitOnly && !listGroups && spawnSync('sh', ['-c', 'busybox --list >/dev/null 2>&1 && file -L "$(command -v busybox)" | grep -q static']).status !== 0) missing.push('busybox-static');
if (missing.length) {
  const canInstall = process.getuid?.() === 0 && spawnSync('sh', ['-c', 'command -v apt-get']).status === 0;
  console.log(`== system packages missing: ${missing.join(' ')}`);
  if (!canInstall || !phase('install system packages', 'bash', ['scripts/install-system-deps.sh'])) {
    console.log('== install them with: sudo bash scripts/install-system-deps.sh');
    console.log(`0 passed, 1 failed, 0 skipped`);
    process.exit(1);
  }
}

// The PostgreSQL store tests need a server: start Debian's cluster when we may (root).
if (!unitOnly && !listGroups && !process.env.CROWDBAKE_TEST_POSTGRES && process.getuid?.() === 0) {
  console.log('\n== start PostgreSQL: bash scripts/start-postgres.sh');
  const r = spawnSync('bash', ['scripts/start-postgres.sh'], { cwd: root, encoding: 'utf8', stdio: ['ignore', 'pipe', 'inherit'] });
  const m = /^export CROWDBAKE_TEST_POSTGRES=(\S+)$/m.exec(r.stdout ?? '');
  if (r.status === 0 && m) process.env.CROWDBAKE_TEST_POSTGRES = m[1];
  else console.log('== PostgreSQL did not start: the PostgreSQL store tests will fail');
}

const built = phase('build', 'npm', ['run', '--silent', 'build']);
if (listGroups) {
  const all = built ? findTests(join(root, 'dist')).sort() : [];
  for (const [g, what] of Object.entries(GROUPS)) {
    const files = all.filter((f) => groupOf(f) === g);
    console.log(`\n${g} (${files.length}): ${what}`);
    for (const f of files) console.log(`  ${relative(root, f)}`);
  }
  process.exit(built ? 0 : 1);
}
if (!unitOnly) phase('lint', 'npx', ['eslint', '--max-warnings=0', '.']);
let counts = { passed: 0, failed: 0, skipped: 0, todo: 0 };
if (built) {
  const files = findTests(join(root, 'dist'))
    .filter((f) => !groups.length || groups.includes(groupOf(f)))
    .filter((f) => !filters.length || filters.some((s) => f.includes(s))).sort();
  const countsDir = mkdtempSync(join(tmpdir(), 'crowdbake-test-'));
  const countsFile = join(countsDir, 'counts.json');
  console.log(`\n== tests: ${files.length} files${groups.length ? ` (group ${groups.join(', ')})` : ''}`);
  if (files.length === 0) { console.log('no test files found'); counts.failed++; } else {
    const r = spawnSync(process.execPath, [
      '--test', '--test-concurrency=2', '--test-timeout=600000',
      '--test-reporter=spec', '--test-reporter-destination=stdout',
      `--test-reporter=${join(root, 'scripts/count-reporter.mjs')}`, `--test-reporter-destination=${countsFile}`,
      ...files.map((f) => relative(root, f)),
    ], { cwd: root, stdio: 'inherit', env: { ...process.env, CROWDBAKE_TEST: '1' } });
    try { counts = JSON.parse(readFileSync(countsFile, 'utf8')); } catch { counts.failed++; }
    if (r.status !== 0 && counts.failed === 0) counts.failed++;
  }
}
const failed = counts.failed + failedPhases;
console.log(`${counts.passed} passed, ${failed} failed, ${counts.skipped} skipped`);
process.exit(failed === 0 && counts.passed > 0 ? 0 : 1);
