import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { copyFileSync, mkdirSync, mkdtempSync, readFileSync, rmSync, utimesSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { BUNDLE_INPUTS, inputsDigest } from './bundle-inputs.js';

// `crowdbake worker` runs from dist/worker-bundle/ (scripts/build-worker-bundle.mjs), about
// 5 MiB less memory in an idle agent than the module tree (bench/README.md). What cli/main.ts
// must get right: the bundle when it is there and current; the tree when it is missing, built
// from other files than the tree holds (a stale bundle would run old code) or
// CROWDBAKE_WORKER_UNBUNDLED=1 asks.

const DIST = join(import.meta.dirname, '..');

/** `crowdbake worker ARGS` through cli/main.js, in a child, with every module it resolves written down. */
function run(main: string, args: string[], env: Record<string, string> = {}) {
  const dir = mkdtempSync(join(tmpdir(), 'crowdbake-bundle-'));
  try {
    const log = join(dir, 'resolved.log');
    writeFileSync(log, '');
    writeFileSync(join(dir, 'hooks.mjs'), `import { appendFileSync } from 'node:fs';
export async function resolve(s, c, next) { const r = await next(s, c); appendFileSync(${JSON.stringify(log)}, r.url + '\\n'); return r; }`);
    const script = `import { register } from 'node:module';
register(${JSON.stringify(pathToFileURL(join(dir, 'hooks.mjs')).href)});
const { main } = await import(${JSON.stringify(pathToFileURL(main).href)});
await main(${JSON.stringify(['worker', ...args])});`;
    const r = spawnSync(process.execPath, ['--input-type=module', '-e', script], { encoding: 'utf8', timeout: 60_000, env: { ...process.env, CROWDBAKE_WORKER_UNBUNDLED: '', ...env } });
    return { status: r.status, stdout: r.stdout, stderr: r.stderr, resolved: readFileSync(log, 'utf8').trim().split('\n') };
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

test('the built CLI runs `crowdbake worker` from the bundle: zod and the agent as modules are not loaded; the flag asks for the tree', () => {
  const main = join(DIST, 'cli', 'main.js');
  const bundled = run(main, ['--help']);
  assert.equal(bundled.status, 0, bundled.stderr);
  assert.match(bundled.stdout, /usage: crowdbake worker/);
  assert.ok(bundled.resolved.some((u) => u.endsWith('/dist/worker-bundle/worker.js')), 'the bundle was loaded');
  assert.deepEqual(bundled.resolved.filter((u) => u.endsWith('/dist/worker/agent.js') || u.includes('/node_modules/zod/')), [], 'nothing of the tree or zod as modules');
  // Its bad usage is still bad usage: cli/args.js (and its UsageError) is one module for both.
  const bad = run(main, ['--no-such-flag']);
  assert.equal(bad.status, 2, 'bad usage exits 2, as UsageError, not 1 as a failure');
  assert.match(bad.stderr, /unknown flag '--no-such-flag' \(see crowdbake worker --help\)/);

  const tree = run(main, ['--help'], { CROWDBAKE_WORKER_UNBUNDLED: '1' });
  assert.equal(tree.status, 0, tree.stderr);
  assert.ok(tree.resolved.some((u) => u.endsWith('/dist/cli/commands/worker.js')), 'the tree\'s worker command');
  assert.ok(!tree.resolved.some((u) => u.includes('/dist/worker-bundle/')), 'not the bundle');
});

test('a missing or stale bundle is not run: the tree is, with a note when the bundle was built from other files', (t) => {
  // A small dist/ of its own: the real cli/main.js, args.js and bundle-inputs.js, a bundle and a tree that say who they are.
  const dist = mkdtempSync(join(tmpdir(), 'crowdbake-dist-'));
  t.after(() => rmSync(dist, { recursive: true, force: true }));
  for (const d of ['cli/commands', 'protocol', 'worker', 'worker-bundle']) mkdirSync(join(dist, d), { recursive: true });
  for (const f of ['cli/main.js', 'cli/args.js', 'cli/bundle-inputs.js', 'protocol/units.js']) copyFileSync(join(DIST, f), join(dist, f));
  writeFileSync(join(dist, 'package.json'), '{"type":"module"}');
  const command = (who: string) => `export async function workerCommand() { process.stdout.write(${JSON.stringify(who)}); return 0; }\n`;
  writeFileSync(join(dist, 'cli/commands/worker.js'), command('tree'));
  writeFileSync(join(dist, 'worker/agent.js'), 'export const version = 1;\n');
  writeFileSync(join(dist, 'worker-bundle/worker.js'), command('bundle'));
  const files = ['cli/commands/worker.js', 'worker/agent.js'];
  writeFileSync(join(dist, 'worker-bundle', BUNDLE_INPUTS), JSON.stringify({ files, sha256: inputsDigest(dist, files) }));
  const main = join(dist, 'cli/main.js');

  assert.equal(run(main, []).stdout, 'bundle', 'built from the tree as it is');
  // A copy (packaging) changes every file's time, not its contents: still the bundle.
  utimesSync(join(dist, 'worker/agent.js'), 2_000_000, 2_000_000);
  assert.equal(run(main, []).stdout, 'bundle', 'the same contents at another time');

  writeFileSync(join(dist, 'worker/agent.js'), 'export const version = 2;\n');
  const stale = run(main, []);
  assert.equal(stale.stdout, 'tree', 'a tsc run since the bundle was built');
  assert.match(stale.stderr, /dist\/worker-bundle was built from other files than dist\/ holds now \(run `npm run build`\)/);

  rmSync(join(dist, 'worker/agent.js'));
  assert.equal(run(main, []).stdout, 'tree', 'one of its inputs is gone');

  rmSync(join(dist, 'worker-bundle'), { recursive: true });
  const none = run(main, []);
  assert.equal(none.stdout, 'tree');
  assert.equal(none.stderr, '', 'no bundle built: nothing to say');
});

test('in the bundle, https, tls and zlib load at their first use, not at start-up, and then work as themselves', async (t) => {
  // The plugin the bundle is built with (scripts/lazy-builtins.mjs), on a small entry that
  // imports the three the way ws (require) and our modules (named ESM imports) do.
  const dir = mkdtempSync(join(tmpdir(), 'crowdbake-lazy-'));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  const { build } = await import('esbuild');
  const { lazyBuiltins } = await import(pathToFileURL(join(DIST, '..', 'scripts', 'lazy-builtins.mjs')).href) as { lazyBuiltins: (names: string[]) => never };
  writeFileSync(join(dir, 'entry.mjs'), `import { gzipSync, gunzipSync } from 'node:zlib';
import { request } from 'node:https';
const tls = require('tls');
const loaded = () => ['https', 'tls', 'zlib'].filter((m) => process.moduleLoadList.includes('NativeModule ' + m));
const before = loaded();
const round = gunzipSync(gzipSync(Buffer.from('a log'))).toString();
const after = loaded();
process.stdout.write(JSON.stringify({ before, after, round, request: typeof request, tls: typeof tls.connect, ciphers: tls.getCiphers().length > 0, after2: loaded() }));
`);
  await build({
    entryPoints: [join(dir, 'entry.mjs')], outfile: join(dir, 'out.mjs'), bundle: true, format: 'esm', platform: 'node', logLevel: 'silent',
    banner: { js: "import { createRequire as __r } from 'node:module'; const require = __r(import.meta.url);" }, plugins: [lazyBuiltins(['https', 'tls', 'zlib'])],
  });
  const r = spawnSync(process.execPath, [join(dir, 'out.mjs')], { encoding: 'utf8', timeout: 30_000 });
  assert.equal(r.status, 0, r.stderr);
  const o = JSON.parse(r.stdout) as { before: string[]; after: string[]; round: string; request: string; tls: string; ciphers: boolean; after2: string[] };
  assert.deepEqual(o.before, [], 'none of them is loaded by the imports alone');
  assert.deepEqual(o.after, ['zlib'], 'zlib at its first call, and only zlib');
  assert.equal(o.round, 'a log', 'the real zlib');
  assert.equal(o.request, 'function');
  assert.equal(o.tls, 'function');
  assert.ok(o.ciphers, 'the real tls');
  assert.deepEqual(o.after2, ['https', 'tls', 'zlib']);
});
