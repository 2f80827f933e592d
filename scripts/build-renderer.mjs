// Bundles renderer/ for the browser into dist/renderer (served by the master and the agent).
// Two builds. app.js (boot.ts) and app.css are what index.html loads: a few KB of script
// with no imports, which sends the first API requests and paints the Builds page's first rows
// (renderer/src/first-rows.ts), then asks the browser to preload the dashboard's chunks (with
// <link rel="modulepreload">, after its requests, so they do not queue behind the bundle) and
// imports chunks/main-*.js. The dashboard is ES modules with code splitting: pages loaded
// with import() (the Contributors page and its chart library) become chunks/*.js, fetched
// only when such a page is opened. The static file servers (master/static-files.ts,
// worker/control-server.ts) serve dist/renderer's subdirectories as they are.
import { build } from 'esbuild';
import { mkdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { relative, resolve } from 'node:path';
const root = new URL('..', import.meta.url).pathname;
const out = `${root}dist/renderer`;
// Old chunks carry hashes in their names: without this they would pile up build after build.
rmSync(`${out}/chunks`, { recursive: true, force: true });
mkdirSync(out, { recursive: true });
const common = {
  bundle: true, minify: true, sourcemap: true, format: 'esm', target: 'es2022', logLevel: 'warning', metafile: true,
  define: { 'process.env.NODE_ENV': '"production"' },
};
// 1. The dashboard (main.tsx, React, zod, …) as chunks, split as above.
const main = await build({
  ...common, entryPoints: { main: `${root}renderer/src/main.tsx` }, splitting: true,
  outdir: out, entryNames: 'chunks/[name]-[hash]', chunkNames: 'chunks/[name]-[hash]',
});
// Its chunk and their static imports, transitively: what app.js asks the browser to preload
// before it imports main (not the pages behind an import() of their own: Contributors, …).
const outputs = main.metafile.outputs;
const mainKey = Object.keys(outputs).find((k) => outputs[k].entryPoint?.endsWith('renderer/src/main.tsx'));
if (!mainKey) throw new Error('build-renderer: no output for main.tsx');
const chunks = [mainKey];
for (let i = 0; i < chunks.length; i++) {
  for (const imp of outputs[chunks[i]].imports) if (imp.kind === 'import-statement' && !imp.external && !chunks.includes(imp.path)) chunks.push(imp.path);
}
const urls = chunks.map((k) => `/${relative(out, resolve(root, k))}`);
// 2. app.js: boot.ts on its own (no chunk shared with the dashboard, so it runs the moment it
// arrives) and app.css, every style of the bundle. It learns the dashboard's URLs from this build.
await build({
  ...common, entryPoints: { app: `${root}renderer/src/boot.ts` }, outdir: out, entryNames: '[name]',
  define: { ...common.define, CROWDBAKE_DASHBOARD_CHUNKS: JSON.stringify(urls) },
});
let html;
try { html = readFileSync(`${root}renderer/index.html`, 'utf8'); } catch { html = null; /* added with the UI */ }
if (html !== null) writeFileSync(`${out}/index.html`, html);
