import { spawn, type ChildProcess } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { CLI } from './cluster.js';

export { freePort } from './ports.js';

/**
 * `crowdbake master` in its own process, on a fixed address, so a test can SIGKILL it and
 * start it again on the same data. `output()` is everything it printed, across restarts.
 */
export class MasterProcess {
  private child: ChildProcess | null = null;
  private out = '';
  readonly url: string;

  /**
   * `extraArgs` go after the usual ones, e.g. `['--store', 'postgres://…']`; `prefix` runs it
   * through another program that execs it (e.g. `ip netns exec NS`, test/helpers/netns.ts), so
   * the signals still reach the master.
   */
  constructor(readonly configDir: string, readonly dataDir: string, readonly host: string, readonly port: number, readonly extraArgs: readonly string[] = [],
    readonly prefix: readonly string[] = []) {
    this.url = `http://${host}:${port}`;
  }

  get adminToken(): string {
    return readFileSync(join(this.dataDir, 'admin.token'), 'utf8').trim();
  }

  output(): string {
    return this.out;
  }

  /** Starts it and resolves once it answers /healthz. */
  async start(timeoutMs = 30_000): Promise<void> {
    const argv = [process.execPath, CLI, 'master', '--config', this.configDir, '--data', this.dataDir, '--listen', `${this.host}:${this.port}`, ...this.extraArgs];
    const [program, ...args] = [...this.prefix, ...argv];
    const child = spawn(program!, args, {
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    this.child = child;
    child.stdout!.on('data', (c: Buffer) => { this.out += c.toString(); });
    child.stderr!.on('data', (c: Buffer) => { this.out += c.toString(); });
    const end = Date.now() + timeoutMs;
    for (;;) {
      if (child.exitCode !== null) throw new Error(`the master exited with ${child.exitCode}:\n${this.out.slice(-2000)}`);
      const ok = await fetch(`${this.url}/healthz`).then((r) => r.ok, () => false);
      if (ok) return;
      if (Date.now() > end) throw new Error(`the master did not answer within ${timeoutMs} ms:\n${this.out.slice(-2000)}`);
      await new Promise((r) => setTimeout(r, 25));
    }
  }

  /** Sends a signal without waiting (SIGSTOP, SIGCONT). */
  signal(signal: NodeJS.Signals): void {
    this.child?.kill(signal);
  }

  /** Sends a signal and waits for the process to end. */
  async stop(signal: NodeJS.Signals = 'SIGKILL'): Promise<void> {
    const child = this.child;
    if (!child || child.exitCode !== null || child.signalCode !== null) return;
    const exited = new Promise((ok) => child.once('exit', ok));
    child.kill(signal);
    await exited;
    this.child = null;
  }
}
