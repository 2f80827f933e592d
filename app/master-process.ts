import { spawn, type ChildProcess } from 'node:child_process';
import { createInterface } from 'node:readline';
import { masterUrlFromOutput } from './launch-options.js';

/** A `crowdbake master` the app runs as a child (Electron's own Node), and its URL once it listens. */
export interface MasterProcess {
  url: Promise<string>;
  child: ChildProcess;
  stop(): Promise<void>;
}

export function startMasterProcess(o: { execPath: string; cli: string; configDir: string; dataDir: string | null; listen: string; env: NodeJS.ProcessEnv }): MasterProcess {
  const args = [o.cli, 'master', '--config', o.configDir, '--listen', o.listen, ...(o.dataDir ? ['--data', o.dataDir] : [])];
  const child = spawn(o.execPath, args, { env: o.env, stdio: ['ignore', 'pipe', 'inherit'] });
  const url = new Promise<string>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error('the master did not start within 30 s')), 30_000);
    createInterface({ input: child.stdout! }).on('line', (line) => {
      console.log(line);
      const u = masterUrlFromOutput(line);
      if (u) { clearTimeout(timer); resolve(u); }
    });
    child.once('exit', (code) => { clearTimeout(timer); reject(new Error(`the master exited (code ${code ?? 'none'})`)); });
  });
  url.catch(() => undefined);
  return {
    url, child,
    stop: async () => {
      if (child.exitCode !== null || child.signalCode !== null) return;
      const exited = new Promise<void>((ok) => child.once('exit', () => ok()));
      child.kill('SIGINT');
      await exited;
    },
  };
}
