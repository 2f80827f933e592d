// The Crowdbake desktop app's entry: the real electron module handed to the wiring in
// desktop.ts (tested against a named stand-in; the Electron binary cannot be downloaded on
// the machines the tests run on). Nothing else happens here.
import { fileURLToPath } from 'node:url';
import * as electron from 'electron';
import { startDesktop } from './desktop.js';
import type { ElectronLike } from './electron-like.js';

const here = (rel: string) => fileURLToPath(new URL(rel, import.meta.url));
const e: ElectronLike = electron;

startDesktop(e, {
  argv: process.argv.slice(electron.app.isPackaged ? 1 : 2),
  env: process.env,
  execPath: process.execPath,
  electronPath: process.execPath,
  appEntry: here('./main.js'),
  cli: here('../../bin/crowdbake.js'),
  rendererDir: here('../renderer/'),
  preload: here('./preload.cjs'),
  trayIcons: here('../../assets/tray/'),
  appIcon: here('../../assets/icon.png'),
});
