// Bundles renderer/ for the browser into dist/renderer (served by the master and the agent).
// ES modules with code splitting: app.js (and app.css) is what the first paint needs; pages
// loaded with import() (the Contributors page and its chart library) become chunks/*.js,
// fetched only when such a page is opened. The static file servers (master/static-files.ts,
// worker/control-server.ts) serve dist/renderer's subdirectories as they are.
import { build } from 'esbuild';
import { cpSync, mkdirSync, rmSync } from 'node:fs';
const root = new URL('..', import.meta.url).pathname;
const out = `${root}dist/renderer`;
// Old chunks carry hashes in their names: without this they would pile up build after build.
rmSync(`${out}/chunks`, { recursive: true, force: true });
mkdirSync(out, { recursive: true });
await build({
  entryPoints: { app: `${root}renderer/src/main.tsx` },
  bundle: true, minify: true, sourcemap: true, format: 'esm', splitting: true, target: 'es2022',
  outdir: out, entryNames: '[name]', chunkNames: 'chunks/[name]-[hash]', logLevel: 'warning',
  define: { 'process.env.NODE_ENV': '"production"' },
});
try { cpSync(`${root}renderer/index.html`, `${out}/index.html`); } catch { /* added with the UI */ }
