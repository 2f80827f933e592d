#!/usr/bin/env node
// Refreshes the [crowd] pages' screenshots in docs/screenshots: runs the browser tests that
// take them with CROWDBAKE_SCREENSHOTS pointing there (they write to a temp dir otherwise).
// Needs a build first: npm run build.  Usage: node scripts/screenshots.mjs
import { spawnSync } from 'node:child_process';
import { existsSync, mkdirSync } from 'node:fs';

const root = new URL('..', import.meta.url).pathname;
const out = `${root}docs/screenshots`;
const tests = ['dist/test/crowd-dashboard.test.js'];
for (const t of tests) {
  if (!existsSync(`${root}${t}`)) {
    console.error(`${t} is not built: run npm run build first`);
    process.exit(1);
  }
}
mkdirSync(out, { recursive: true });
const r = spawnSync(process.execPath, ['--test', ...tests], { cwd: root, stdio: 'inherit', env: { ...process.env, CROWDBAKE_SCREENSHOTS: out } });
process.exit(r.status ?? 1);
