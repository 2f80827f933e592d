// Bundles renderer/ for the browser into dist/renderer (served by the master and the agent).
import { build } from 'esbuild';
import { cpSync, mkdirSync } from 'node:fs';
const root = new URL('..', import.meta.url).pathname;
mkdirSync(`${root}dist/renderer`, { recursive: true });
await build({
  entryPoints: [`${root}renderer/src/main.tsx`],
  bundle: true, minify: true, sourcemap: true, format: 'esm', target: 'es2022',
  outfile: `${root}dist/renderer/app.js`, logLevel: 'warning',
  define: { 'process.env.NODE_ENV': '"production"' },
});
try { cpSync(`${root}renderer/index.html`, `${root}dist/renderer/index.html`); } catch { /* added with the UI */ }
