import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';

// Tiers are V8's, so the checks run in a child of their own with V8's test natives; this
// process's flags are left alone.
const TIERS = pathToFileURL(join(import.meta.dirname, 'v8-tiers.js')).href;

function child(body: string): string {
  const r = spawnSync(process.execPath, ['--allow-natives-syntax', '--input-type=module', '-e', body], { encoding: 'utf8', timeout: 30_000 });
  assert.equal(r.status, 0, r.stderr);
  return r.stdout.trim();
}

const HOT = `function hot(fn) { for (let k = 0; k < 3000; k++) fn(500); return fn; }
const make = () => new Function('n', 'let s = 0; for (let i = 0; i < n; i++) s += i; return s');`;

test('an idle agent runs on the interpreter only; its first build brings baseline code back (Sparkplug), for good', () => {
  const out = child(`import { startIdleAgent, compileForBuilds, interpreterOnly } from ${JSON.stringify(TIERS)};
${HOT}
startIdleAgent();
const idle = hot(make());
const before = [interpreterOnly(), %ActiveTierIsIgnition(idle)];
compileForBuilds();
const busy = hot(make());
compileForBuilds();
console.log(JSON.stringify([...before, interpreterOnly(), %ActiveTierIsSparkplug(busy)]));`);
  assert.deepEqual(JSON.parse(out), [true, true, false, true]);
});

test('compileForBuilds changes nothing in a process the idle start did not set up (a master, tests)', () => {
  const out = child(`import { compileForBuilds, interpreterOnly } from ${JSON.stringify(TIERS)};
import { setFlagsFromString } from 'node:v8';
${HOT}
setFlagsFromString('--max-opt=0'); // if compileForBuilds raised the tier anyway, this would show it
compileForBuilds();
console.log(JSON.stringify([interpreterOnly(), %ActiveTierIsIgnition(hot(make()))]));`);
  assert.deepEqual(JSON.parse(out), [false, true]);
});
