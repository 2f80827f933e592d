// electron-builder.yml packs what the app loads at run time (electron-builder itself cannot run
// here: it needs the Electron binary). Checked against the paths main.ts and desktop.ts use.
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { test } from 'node:test';
import { parse } from 'yaml';
import { URL_SCHEME } from './join-links.js';

const root = new URL('../../', import.meta.url);
const config = parse(readFileSync(new URL('electron-builder.yml', root), 'utf8')) as {
  files: string[]; asarUnpack: string[]; extraMetadata: { main: string }; protocols: { schemes: string[] }[];
  linux: { target: string[]; mimeTypes: string[] }; mac: { target: string }; win: { target: string };
};
const pkg = JSON.parse(readFileSync(new URL('package.json', root), 'utf8')) as { scripts: Record<string, string> };
const main = readFileSync(new URL('app/main.ts', root), 'utf8');

test('deb and AppImage, the macOS and Windows targets written, the crowdbake: scheme registered', () => {
  assert.deepEqual(config.linux.target, ['deb', 'AppImage']);
  assert.equal(config.mac.target, 'dmg');
  assert.equal(config.win.target, 'nsis');
  assert.deepEqual(config.protocols.flatMap((p) => p.schemes), [URL_SCHEME]);
  assert.ok(config.linux.mimeTypes.includes(`x-scheme-handler/${URL_SCHEME}`));
  assert.match(pkg.scripts['dist:app'] ?? '', /npm run build && electron-builder/);
});

test('the files it packs hold everything main.ts points at, the worker included, and no tests', () => {
  assert.equal(config.extraMetadata.main, 'dist/app/main.js');
  const wanted = [...main.matchAll(/here\('([^']+)'\)/g)].map((m) => m[1]!);
  assert.deepEqual(wanted.sort(), ['../../assets/icon.png', '../../assets/tray/', '../../bin/crowdbake.js', '../renderer/', './main.js', './preload.cjs']);
  for (const f of ['bin/crowdbake.js', 'dist/**/*', 'assets/icon.png', 'assets/tray/*.png']) assert.ok(config.files.includes(f), f);
  assert.ok(config.files.includes('!dist/test/**') && config.files.includes('!dist/**/*.test.js'));
  for (const f of ['dist/worker/**', 'dist/cli/**', 'bin/crowdbake.js']) assert.ok(config.asarUnpack.includes(f), `${f} runs as a child process, outside the asar`);
});
