#!/usr/bin/env node
import { setFlagsFromString } from 'node:v8';

// A worker idles on a volunteer's computer for hours (measured in bench/buildbot-worker.ts):
// - keep V8's young generation from growing past its first 1 MiB semi-space (it otherwise
//   grows to 8 MiB during start-up and keeps the pages; no cost to log throughput). A GC sizing
//   heuristic, read at each resize, so setting it here, before any sizable allocation, is safe;
// - optimise with Maglev at most, not TurboFan (--max-opt=2): TurboFan's code in the node
//   binary is then never paged in, 3.5 MiB less RSS, and the agent's work is system calls and
//   buffers, not hot JavaScript (its CPU per 20 MB log and per trivial build did not grow,
//   bench/README.md). Read at each tier-up decision, so setting it before any code is hot is safe.
if (process.argv[2] === 'worker') setFlagsFromString('--semi-space-growth-factor=1 --max-opt=2');

import('../dist/cli/main.js').then((m) => m.main(process.argv.slice(2))).catch((err) => {
  if (err && err.code === 'ERR_MODULE_NOT_FOUND' && String(err.message).includes('dist/cli/main.js')) {
    console.error('crowdbake: not built yet; run `npm ci` (or `npm run build`) in the checkout first');
    process.exit(1);
  }
  console.error(err);
  process.exit(1);
});
