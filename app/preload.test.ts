import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { test } from 'node:test';
import { BRIDGE_GLOBAL, IPC_INVOKE } from './ipc-channels.js';

// The compiled preload must run in a sandboxed renderer: CommonJS, requiring only 'electron'.
const preload = readFileSync(new URL('./preload.cjs', import.meta.url), 'utf8');

test('the compiled preload is CommonJS and requires nothing but electron', () => {
  assert.doesNotMatch(preload, /^\s*(import|export)\s/m);
  assert.deepEqual([...preload.matchAll(/require\(("[^"]*"|'[^']*')\)/g)].map((m) => m[1]), ['"electron"']);
});

test('it exposes one bridge under the agreed name, invoking only the one channel of the map', () => {
  assert.deepEqual([...preload.matchAll(/exposeInMainWorld\('([^']+)'/g)].map((m) => m[1]), [BRIDGE_GLOBAL]);
  assert.deepEqual([...preload.matchAll(/ipcRenderer\.invoke\('([^']+)'/g)].map((m) => m[1]), [IPC_INVOKE]);
});
