#!/usr/bin/env node
// Runs one scenario for bench/run.mjs: `node bench/run-scenario.mjs NAME OUT.json`. On SIGTERM
// or SIGINT, or when the scenario throws, everything it started is stopped before exiting.
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';

const [name, out] = process.argv.slice(2);
const root = new URL('..', import.meta.url).pathname;
const { stopEverything, partialResults } = await import(join(root, 'dist', 'bench', 'lib', 'procs.js'));
let stopping = false;
for (const sig of ['SIGINT', 'SIGTERM']) {
  process.on(sig, () => {
    if (stopping) return;
    stopping = true;
    // What was measured before the stop is kept; run.mjs adds a row saying why it stopped.
    const partial = partialResults();
    if (partial.length) writeFileSync(out, JSON.stringify(partial));
    void stopEverything().finally(() => process.exit(130));
  });
}
let code = 0;
try {
  const results = await (await import(join(root, 'dist', 'bench', `${name}.js`))).run();
  writeFileSync(out, JSON.stringify(results));
} catch (e) {
  // Stopped from outside: what failed is a consequence (its processes were stopped); the signal handler wrote what was measured.
  if (!stopping) {
    console.error(`  failed: ${e.stack ?? e}`);
    writeFileSync(out, JSON.stringify([...partialResults(), { name: 'failed', value: NaN, unit: '', note: String(e.message ?? e) }]));
  }
  code = 1;
} finally {
  await stopEverything();
}
process.exit(code);
