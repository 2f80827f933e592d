import { spawn } from 'node:child_process';
import { createInterface } from 'node:readline';
import type { ProvisionContext, Provisioner } from './provisioner.js';

/**
 * Runs the maintainer's own scripts, as runvm users would: `start` and `stop` are shell
 * commands run in the config directory with CROWDBAKE_MASTER_URL, CROWDBAKE_WORKER_NAME,
 * CROWDBAKE_WORKER_TOKEN and CROWDBAKE_WORKER_LABELS in their environment. Their output goes
 * to the master's log; a non-zero exit is an error naming the command.
 */
export class CommandProvisioner implements Provisioner {
  constructor(private readonly commands: { start: string; stop: string }, private readonly cwd: string, private readonly timeoutMs = 10 * 60_000) {}

  start(ctx: ProvisionContext): Promise<void> {
    return this.run('start', this.commands.start, ctx);
  }

  stop(ctx: ProvisionContext): Promise<void> {
    return this.run('stop', this.commands.stop, ctx);
  }

  private run(what: string, command: string, ctx: ProvisionContext): Promise<void> {
    return new Promise((ok, fail) => {
      const child = spawn('/bin/sh', ['-c', command], {
        cwd: this.cwd,
        stdio: ['ignore', 'pipe', 'pipe'],
        env: {
          ...process.env,
          CROWDBAKE_MASTER_URL: ctx.masterUrl, CROWDBAKE_WORKER_NAME: ctx.name,
          CROWDBAKE_WORKER_TOKEN: ctx.token, CROWDBAKE_WORKER_LABELS: ctx.labels.join(','),
        },
      });
      for (const stream of [child.stdout!, child.stderr!]) createInterface({ input: stream }).on('line', (l) => ctx.log(`${what}: ${l}`));
      const timer = setTimeout(() => child.kill('SIGKILL'), this.timeoutMs);
      child.on('error', (e) => { clearTimeout(timer); fail(new Error(`${what} command "${command}": ${e.message}`)); });
      child.on('close', (code, signal) => {
        clearTimeout(timer);
        if (code === 0) ok();
        else fail(new Error(`${what} command "${command}" ${signal ? `was killed (${signal}${signal === 'SIGKILL' ? ', took too long' : ''})` : `exited with ${code}`}`));
      });
    });
  }
}
