#!/usr/bin/env node
import { setFlagsFromString } from 'node:v8';

// A worker idles on a volunteer's computer for hours: keep V8's young generation from growing
// past its first 1 MiB semi-space (it otherwise grows to 8 MiB during start-up and keeps the
// pages; measured in bench/buildbot-worker.ts, no cost to log throughput). A GC sizing
// heuristic, read at each resize, so setting it here, before any sizable allocation, is safe.
if (process.argv[2] === 'worker') setFlagsFromString('--semi-space-growth-factor=1');

import('../dist/cli/main.js').then((m) => m.main(process.argv.slice(2))).catch((err) => {
  if (err && err.code === 'ERR_MODULE_NOT_FOUND' && String(err.message).includes('dist/cli/main.js')) {
    console.error('crowdbake: not built yet; run `npm ci` (or `npm run build`) in the checkout first');
    process.exit(1);
  }
  console.error(err);
  process.exit(1);
});
