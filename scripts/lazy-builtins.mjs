// An esbuild plugin for the worker bundle (build-worker-bundle.mjs); tested in cli/worker-bundle.test.ts.
import { createRequire } from 'node:module';

/**
 * Node built-ins an idle agent never calls, loaded at their first use instead of at start-up:
 * TLS (a master on https, a base downloaded, joining), zlib (permessage-deflate, a VM's
 * assets), readline (the idle sources' helpers' output), perf_hooks (timing a checkout or a
 * VM's boot), dns. ws and our own modules import them at the top; loading https, tls and zlib
 * costs an idle process about 1 MiB (bench/README.md, "The idle worker's memory"). Not
 * child_process: Node loads it anyway when the control API listens (net → cluster). Each import resolves to
 * a stand-in whose properties are getters over the real module, required at the first read of
 * any of them. The names are the real module's own, read here from the Node that builds.
 */
export function lazyBuiltins(names) {
  const nodeRequire = createRequire(import.meta.url);
  const filter = new RegExp(`^(node:)?(${names.join('|')})$`);
  return {
    name: 'lazy-builtins',
    setup(b) {
      b.onResolve({ filter }, (args) => ({ path: args.path.replace(/^node:/, ''), namespace: 'lazy-builtin' }));
      b.onLoad({ filter: /.*/, namespace: 'lazy-builtin' }, (args) => ({
        loader: 'js',
        // The id is built at run time so that esbuild does not resolve it back to this stand-in.
        contents: `let real;
const load = () => (real ??= require(['node', ${JSON.stringify(args.path)}].join(':')));
for (const key of ${JSON.stringify(Object.keys(nodeRequire(args.path)))}) {
  Object.defineProperty(module.exports, key, { enumerable: true, get: () => load()[key] });
}
`,
      }));
    },
  };
}
