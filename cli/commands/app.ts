import { spawn } from 'node:child_process';
import { createRequire } from 'node:module';
import { fileURLToPath } from 'node:url';

const HELP = `usage: crowdbake app [crowdbake://join?…] [--start-master CONFIG_DIR [--data DIR] [--listen HOST:PORT] | --master URL]
                     [--worker-data DIR] [--worker-token TOKEN]

The desktop app: the volunteer's window (a first-run screen when nothing is joined: join a
project by its link, or run a master here; then this computer, limits, history, results,
projects and what it gave) and a tray icon; it runs the worker as its own process. A
crowdbake: join link opens it. Needs the Electron binary, which
\`npm ci\` does not download (its install script is not allowed to run); fetch it once with
  node node_modules/electron/install.js
`;

const APP_MAIN = fileURLToPath(new URL('../../app/main.js', import.meta.url));

export async function appCommand(argv: string[]): Promise<number> {
  if (argv.includes('--help') || argv.includes('-h')) { process.stdout.write(HELP); return 0; }
  let electron: string;
  try {
    // The electron package exports the path of its binary, and throws when the binary is missing.
    electron = createRequire(import.meta.url)('electron') as string;
  } catch (e) {
    console.error(`crowdbake app: the Electron binary is not installed (${(e as Error).message.split('\n')[0]}).`);
    console.error('Fetch it with: node node_modules/electron/install.js   (or use the dashboard in a browser: crowdbake demo)');
    return 1;
  }
  const child = spawn(electron, [APP_MAIN, ...argv], { stdio: 'inherit' });
  return new Promise((ok) => {
    child.on('error', (e) => { console.error(`crowdbake app: cannot start Electron: ${e.message}`); ok(1); });
    child.on('exit', (code) => ok(code ?? 1));
  });
}
