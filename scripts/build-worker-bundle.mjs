// Bundles `crowdbake worker` (dist/cli/commands/worker.js and what it imports, tsc's output)
// into dist/worker-bundle/, which cli/main.ts loads for the worker command when it exists.
//
// Why: an idle volunteer agent is measured against the stock buildbot-worker's memory
// (issue #19). Loaded as ~170 separate ES modules (zod alone is 95), the agent holds about
// 5 MiB more private memory than the same code as a few bundled files: each module costs the
// ESM loader its records, wrappers and a source string of its own (bench/README.md, "The idle
// worker's memory"). Code splitting keeps what the agent loads at its first build, or only for
// some executors (the runner, signing, the VM and container executors), in chunks of their
// own, imported when first used, as in the unbundled tree.
//
// The bundle sits at the same depth as dist/worker/, so the paths the code finds from its own
// location (`new URL('../renderer/', import.meta.url)`) are the same. Packages with native
// parts, and those the worker loads only for some set-ups, stay external and resolve from
// node_modules as before. cli/args.js stays external too: cli/main.js catches its UsageError
// by class, so both must share that one module.
//
// inputs.json names the files of dist/ it was built from, with a digest of their contents:
// cli/main.ts runs the bundle only while they are unchanged (cli/bundle-inputs.ts).
import { build } from 'esbuild';
import { rmSync, writeFileSync } from 'node:fs';
import { dirname, relative, resolve } from 'node:path';
import { lazyBuiltins } from './lazy-builtins.mjs';

const root = new URL('..', import.meta.url).pathname;
const out = `${root}dist/worker-bundle`;
rmSync(out, { recursive: true, force: true });

const shared = resolve(root, 'dist/cli/args.js');
const result = await build({
  entryPoints: { worker: `${root}dist/cli/commands/worker.js` },
  outdir: out, bundle: true, splitting: true, format: 'esm', platform: 'node', target: 'node20',
  // Flat: every file at the same depth, for the paths above.
  chunkNames: '[name]-[hash]', sourcemap: true, logLevel: 'warning', legalComments: 'none', metafile: true, minifyWhitespace: true,
  // Native or set-up-specific packages: resolved at run time from node_modules, as before.
  external: ['better-sqlite3', 'bufferutil', 'utf-8-validate', 'electron', 'playwright-core', 'pg', 'pg-native', '@aws-sdk/*'],
  // CommonJS packages bundled into an ES module still call require() for Node's built-ins.
  banner: { js: "import { createRequire as __crowdbakeRequire } from 'node:module'; const require = __crowdbakeRequire(import.meta.url);" },
  plugins: [lazyBuiltins(['https', 'tls', 'zlib', 'readline', 'perf_hooks', 'dns']), {
    name: 'shared-cli-args',
    setup(b) {
      b.onResolve({ filter: /\/args\.js$/ }, (args) => (resolve(dirname(args.importer), args.path) === shared
        ? { path: '../cli/args.js', external: true } : undefined));
    },
  }],
});

const { BUNDLE_INPUTS, inputsDigest } = await import(`${root}dist/cli/bundle-inputs.js`);
const dist = resolve(root, 'dist');
const files = Object.keys(result.metafile.inputs).map((f) => relative(dist, resolve(root, f)))
  .filter((f) => !f.startsWith('..')).sort();
writeFileSync(`${out}/${BUNDLE_INPUTS}`, `${JSON.stringify({ files, sha256: inputsDigest(dist, files) }, null, 1)}\n`);
