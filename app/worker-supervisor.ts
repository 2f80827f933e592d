import { spawn, type ChildProcess } from 'node:child_process';
import { AgentClient } from './agent-client.js';

export interface WorkerSupervisorOptions {
  /** The program that runs the CLI (Electron's own binary with ELECTRON_RUN_AS_NODE=1, or node). */
  execPath: string;
  /** Arguments: the CLI script and `worker …`. */
  args: () => string[];
  env: () => NodeJS.ProcessEnv;
  dataDir: string;
  /** Wait before starting a worker that died again (default 5 s). */
  restartDelayMs?: number;
  log: (line: string) => void;
}

/**
 * The app's worker agent, `crowdbake worker` as its own process: started when there is
 * something to serve, started again when it dies, stopped gracefully on quit — either at once
 * (SIGINT: its builds stop and their masters requeue them) or after the builds running now
 * have finished ("finish the current build, then pause", then SIGINT).
 */
export class WorkerSupervisor {
  private child: ChildProcess | null = null;
  private stopping = false;
  private restartTimer: NodeJS.Timeout | null = null;
  /** How many times the worker was started (the first start included). */
  starts = 0;

  constructor(private readonly o: WorkerSupervisorOptions) {}

  get running(): boolean {
    return this.child !== null;
  }

  get pid(): number | null {
    return this.child?.pid ?? null;
  }

  start(): void {
    if (this.child || this.stopping) return;
    if (this.restartTimer) { clearTimeout(this.restartTimer); this.restartTimer = null; }
    const child = spawn(this.o.execPath, this.o.args(), { env: this.o.env(), stdio: ['ignore', 'inherit', 'inherit'] });
    this.child = child;
    this.starts++;
    child.once('error', (e) => this.o.log(`the worker could not start: ${e.message}`));
    child.once('exit', (code, signal) => {
      if (this.child === child) this.child = null;
      if (this.stopping) return;
      const delay = this.o.restartDelayMs ?? 5000;
      this.o.log(`the worker exited (${signal ?? `code ${code ?? 'none'}`}); starting it again in ${Math.round(delay / 100) / 10} s`);
      this.restartTimer = setTimeout(() => { this.restartTimer = null; this.start(); }, delay);
    });
  }

  /** Restarts the worker now (e.g. it has a project to serve that it did not start with). */
  async restart(): Promise<void> {
    await this.stop('requeue');
    this.stopping = false;
    this.start();
  }

  /**
   * Stops the worker for good. `finish`: asks it to finish what runs now and pause (kept across
   * restarts, so the next start is paused too — resume from the window or the tray), waits until
   * nothing runs, then stops it. `requeue`: stops it at once.
   */
  async stop(how: 'requeue' | 'finish', waitLimitMs = 6 * 3_600_000): Promise<void> {
    this.stopping = true;
    if (this.restartTimer) { clearTimeout(this.restartTimer); this.restartTimer = null; }
    const child = this.child;
    if (!child) return;
    if (how === 'finish') {
      const agent = AgentClient.open(this.o.dataDir);
      if (typeof agent !== 'string') {
        try {
          await agent.call('PATCH', '/preferences', { pauseAfterCurrent: true });
          const until = Date.now() + waitLimitMs;
          while (this.child === child && Date.now() < until && (await agent.status()).current.length > 0) await new Promise((r) => setTimeout(r, 500));
        } catch (e) {
          this.o.log(`could not wait for the current build: ${(e as Error).message}; stopping the worker now`);
        }
      }
    }
    if (this.child !== child) return;
    const exited = new Promise<void>((ok) => child.once('exit', () => ok()));
    child.kill('SIGINT');
    const timer = setTimeout(() => child.kill('SIGKILL'), 30_000);
    await exited;
    clearTimeout(timer);
  }
}
