#!/usr/bin/env node
import('../dist/cli/main.js').then((m) => m.main(process.argv.slice(2))).catch((err) => {
  if (err && err.code === 'ERR_MODULE_NOT_FOUND' && String(err.message).includes('dist/cli/main.js')) {
    console.error('crowdbake: not built yet; run `npm ci` (or `npm run build`) in the checkout first');
    process.exit(1);
  }
  console.error(err);
  process.exit(1);
});
