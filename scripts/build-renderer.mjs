// Bundles renderer/ for the browser into dist/renderer (served by the master and the agent).
// ES modules with code splitting: app.js (and app.css) is what the first paint needs; pages
// loaded with import() (the Contributors page and its chart library) become chunks/*.js,
// fetched only when such a page is opened. Code app.js shares with them is a chunk app.js
// imports: index.html names it with <link rel="modulepreload"> so the browser fetches it
// alongside app.js rather than after it. The static file servers (master/static-files.ts,
// worker/control-server.ts) serve dist/renderer's subdirectories as they are.
import { build } from 'esbuild';
import { mkdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { relative, resolve } from 'node:path';
const root = new URL('..', import.meta.url).pathname;
const out = `${root}dist/renderer`;
// Old chunks carry hashes in their names: without this they would pile up build after build.
rmSync(`${out}/chunks`, { recursive: true, force: true });
mkdirSync(out, { recursive: true });
const result = await build({
  entryPoints: { app: `${root}renderer/src/main.tsx` },
  bundle: true, minify: true, sourcemap: true, format: 'esm', splitting: true, target: 'es2022',
  outdir: out, entryNames: '[name]', chunkNames: 'chunks/[name]-[hash]', logLevel: 'warning', metafile: true,
  define: { 'process.env.NODE_ENV': '"production"' },
});
const app = Object.entries(result.metafile.outputs).find(([, o]) => o.entryPoint?.endsWith('renderer/src/main.tsx'))?.[1];
const preload = (app?.imports ?? []).filter((i) => i.kind === 'import-statement').map((i) => `/${relative(out, resolve(i.path))}`);
let html;
try { html = readFileSync(`${root}renderer/index.html`, 'utf8'); } catch { html = null; /* added with the UI */ }
if (html !== null) {
  const tag = /( *)(<script type="module" src="\/app\.js"><\/script>)/;
  writeFileSync(`${out}/index.html`, html.replace(tag, (_m, indent, script) => `${preload.map((p) => `${indent}<link rel="modulepreload" href="${p}">\n`).join('')}${indent}${script}`));
}
