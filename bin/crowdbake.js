#!/usr/bin/env node
// A worker idles on a volunteer's computer for hours: its V8 settings (worker/v8-tiers.ts) are
// made before anything else is loaded.
const ready = process.argv[2] === 'worker'
  ? import('../dist/worker/v8-tiers.js').then((m) => m.startIdleAgent())
  : Promise.resolve();

ready.then(() => import('../dist/cli/main.js')).then((m) => m.main(process.argv.slice(2))).catch((err) => {
  if (err && err.code === 'ERR_MODULE_NOT_FOUND' && /dist\/(cli\/main|worker\/v8-tiers)\.js/.test(String(err.message))) {
    console.error('crowdbake: not built yet; run `npm ci` (or `npm run build`) in the checkout first');
    process.exit(1);
  }
  console.error(err);
  process.exit(1);
});
