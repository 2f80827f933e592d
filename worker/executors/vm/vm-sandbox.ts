import type { ChildProcess } from 'node:child_process';
import { spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { EventEmitter } from 'node:events';
import { createReadStream } from 'node:fs';
import { mkdir, readdir, rename, rm, stat } from 'node:fs/promises';
import { basename, join } from 'node:path';
import { PassThrough, type Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { setTimeout as delay } from 'node:timers/promises';
import type { Sandbox, StepOutcome, StepRequest } from '../executor.js';
import { processCpuMs } from '../../cpu-time.js';
import { errorOutcome, formatBytes, FreezeGate, invalidEnv, supervise, type Supervised } from '../step-support.js';
import type { GuestVm } from './guest-vm.js';
import { lastLines, runTool } from './run-tool.js';
import { TarFilter } from './tar-filter.js';

const SYNC_TIMEOUT_MS = 30 * 60_000;
const PATH = '/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin';

/**
 * One build's VM. The workdir is copied in (tar over the data port) when the sandbox starts and
 * copied back after every step that exits, replacing the host workdir's content, so the host
 * holds the build's files whenever run() returns. Steps are `run` commands to the agent; their
 * output streams back on separate stdout/stderr ports. Timeout or cancel kills QEMU.
 */
export class VmSandbox implements Sandbox {
  private readonly gate = new FreezeGate();
  private broken: string | null = null;
  private destroyed = false;
  private destroying: Promise<void> | undefined;
  private current: Supervised | undefined;
  private lock: Promise<unknown> = Promise.resolve();

  private constructor(private readonly vm: GuestVm, private readonly workdir: string, private readonly diskBytes: number | undefined) {
    void vm.exited.then(() => { this.broken ??= `${vm.describeExit()}${vm.diagnostics()}`; });
  }

  /** Copies the workdir into the booted VM; destroys the VM when that fails. */
  static async start(vm: GuestVm, workdir: string, diskBytes: number | undefined): Promise<VmSandbox> {
    const sandbox = new VmSandbox(vm, workdir, diskBytes);
    try {
      await sandbox.copyIn();
    } catch (e) {
      await sandbox.destroy();
      throw new Error(`could not copy the workdir into the VM: ${(e as Error).message}`);
    }
    return sandbox;
  }

  /** For tests and diagnostics: the QEMU process and its private socket dir. */
  get machine(): { pid: number | undefined; socketDir: string } {
    return { pid: this.vm.pid, socketDir: this.vm.socketDir };
  }

  async run(step: StepRequest): Promise<StepOutcome> {
    if (this.destroyed) return errorOutcome('the sandbox was already destroyed');
    if (this.broken) return errorOutcome(this.broken);
    if (this.current) return errorOutcome('another step is still running in this sandbox');
    const badEnv = invalidEnv(step.env);
    if (badEnv) return errorOutcome(badEnv);
    if (Array.isArray(step.run) && step.run.length === 0) return errorOutcome('the step has an empty command');
    while (this.gate.frozen && !step.signal.aborted && !this.destroyed) await this.gate.wait(step.signal);
    if (step.signal.aborted) return { exitCode: null, stopped: 'cancelled', message: 'step was cancelled before it started' };
    if (this.destroyed) return errorOutcome('the sandbox was destroyed before the step started');
    if (this.broken) return errorOutcome(this.broken);
    if (this.current) return errorOutcome('another step is still running in this sandbox');

    const nonce = randomBytes(16).toString('hex');
    const child = new GuestStep();
    const supervised = supervise(child as unknown as ChildProcess, step, {
      kill: () => this.kill(),
      spawnError: (e) => e.message,
    });
    this.current = supervised;
    let reply: string | null = null;
    const link = this.vm.link;
    const replyP = link.nextLine();
    Promise.all([link.stepOutput(nonce, child.stdout, child.stderr), replyP]).then(([, line]) => {
      reply = line;
      child.finish();
    }, () => child.finish());
    try {
      const script = Buffer.from(stepScript(step.run, step.env)).toString('base64');
      link.send(`run ${nonce} ${Math.floor(Date.now() / 1000)} ${script}`);
    } catch {
      child.finish();
    }
    let r;
    try {
      r = await supervised.done;
    } finally {
      this.current = undefined;
    }

    if (r.stopped === 'timeout' || r.stopped === 'cancelled') {
      this.broken = `the VM was killed when an earlier step ${r.stopped === 'timeout' ? 'timed out' : 'was cancelled'}`;
      await Promise.race([this.vm.exited, delay(5000)]); // gone, not just signalled, when we answer
    }
    if (r.stopped) return { exitCode: null, stopped: r.stopped, message: r.message };
    if (this.destroyed) return errorOutcome('the sandbox was destroyed while the step ran');
    const m = reply === null ? null : /^done (\S+) (\d+) (\d+)$/.exec(reply);
    if (!m || m[1] !== nonce) {
      if (reply === null) await Promise.race([this.vm.exited, delay(1000)]); // for its exit status in this.broken
      const why = reply === null ? (this.broken ?? 'the VM stopped answering') : `the VM's agent answered "${String(reply).slice(0, 200)}"`;
      this.broken = `the VM failed while the step ran: ${why}`;
      this.vm.kill();
      return errorOutcome(this.broken);
    }
    const exitCode = Number(m[2]);
    try {
      await this.copyOut(step.signal);
    } catch (e) {
      this.broken = `copying the workdir out of the VM failed: ${(e as Error).message}`;
      this.vm.kill();
      if (step.signal.aborted) return { exitCode: null, stopped: 'cancelled', message: 'step was cancelled' };
      return { exitCode, stopped: 'error', message: this.broken };
    }
    if (Number(m[3]) > 0) {
      const mem = formatBytes(this.vm.options.memoryMiB * 1024 ** 2);
      return { exitCode, stopped: 'memory', message: `step ran out of memory: a process was killed for exceeding the memory limit of ${mem} (the VM's memory)` };
    }
    return { exitCode, stopped: null, message: null };
  }

  /** Stops the VM's CPUs (QMP stop) and the step's timer. */
  freeze(): Promise<void> {
    return this.serial(async () => {
      if (this.gate.frozen || this.destroyed || this.broken) return;
      this.gate.set(true);
      this.current?.timer.pause();
      try {
        await this.vm.qmp.execute('stop');
      } catch (e) {
        this.gate.set(false);
        this.current?.timer.resume();
        throw new Error(`could not freeze the VM: ${(e as Error).message}`);
      }
    });
  }

  thaw(): Promise<void> {
    return this.serial(async () => {
      if (!this.gate.frozen) return;
      if (!this.destroyed && !this.broken) await this.vm.qmp.execute('cont');
      this.gate.set(false);
      this.current?.timer.resume();
    });
  }

  /** Quits QEMU and removes its sockets and record; the host workdir stays (the runner owns it). */
  /** QEMU's process time: every vCPU and I/O thread of the VM (worker/cpu-time.ts). */
  cpuMs(): Promise<number | null> {
    return processCpuMs(this.vm.pid);
  }

  destroy(): Promise<void> {
    if (!this.destroying) {
      this.destroyed = true;
      this.gate.release();
      this.destroying = this.vm.shutdown();
      this.destroying.catch(() => { this.destroying = undefined; });
    }
    return this.destroying;
  }

  private kill(): void {
    this.broken ??= 'the VM was killed';
    this.vm.kill();
  }

  /** host tar of the workdir → `put SIZE` → the agent unpacks it into /work. */
  private async copyIn(): Promise<void> {
    const file = join(this.vm.socketDir, 'in.tar');
    const r = await runTool('tar', ['-c', '-f', file, '-C', this.workdir, '--owner=0', '--group=0', '--numeric-owner', '.'],
      { allowFailure: true, timeoutMs: SYNC_TIMEOUT_MS, installHint: 'apt-get install tar' });
    if (r.code !== 0 && r.code !== 1) throw new Error(`tar of ${this.workdir} failed: ${lastLines(r.stderr, 2) || `exit code ${r.code}`}`);
    try {
      const size = (await stat(file)).size;
      const reply = this.vm.link.nextLine();
      reply.catch(() => {}); // awaited below unless the transfer fails first
      this.vm.link.send(`put ${size}`);
      await this.vm.within(SYNC_TIMEOUT_MS, 'sending the workdir timed out', this.vm.link.sendData(createReadStream(file)));
      const line = await this.vm.within(SYNC_TIMEOUT_MS, 'unpacking the workdir timed out', reply);
      if (line !== 'ok') throw new Error(line.startsWith('fail ') ? line.slice(5) : `the agent answered "${line}"`);
    } finally {
      await rm(file, { force: true });
    }
  }

  /** `get NONCE` → checked tar stream → host tar into a staging dir → swapped into the workdir. */
  private async copyOut(signal: AbortSignal): Promise<void> {
    const nonce = randomBytes(16).toString('hex');
    const staging = join(this.workdir, `.crowdbake-vm-sync-${nonce.slice(0, 12)}`);
    await mkdir(staging);
    const onAbort = (): void => this.vm.kill();
    signal.addEventListener('abort', onAbort, { once: true });
    try {
      const filter = new TarFilter(this.diskBytes);
      const tar = spawn('tar', ['-x', '-f', '-', '-C', staging, '--no-same-owner', '--no-same-permissions', '--delay-directory-restore'],
        { stdio: ['pipe', 'ignore', 'pipe'] });
      let tarErr = '';
      tar.stderr.on('data', (c: Buffer) => { tarErr += c.toString(); });
      const tarDone = new Promise<number | null>((resolve, reject) => {
        tar.on('error', (e) => reject(new Error(`tar could not start: ${e.message}`)));
        tar.on('close', resolve);
      });
      tarDone.catch(() => {});
      const piped = pipeline(filter, tar.stdin);
      piped.catch(() => {});
      const reply = this.vm.link.nextLine();
      reply.catch(() => {}); // awaited below unless the transfer fails first
      this.vm.link.send(`get ${nonce}`);
      await this.vm.within(SYNC_TIMEOUT_MS, 'receiving the workdir timed out', Promise.race([this.vm.link.receiveData(nonce, filter), piped.then(() => {})]));
      filter.end();
      await piped;
      const code = await tarDone;
      if (code !== 0) throw new Error(`tar -x failed: ${lastLines(tarErr, 2) || `exit code ${code}`}`);
      const line = await this.vm.within(SYNC_TIMEOUT_MS, 'the agent did not confirm the copy', reply);
      if (line !== `got ${nonce} 0`) throw new Error(`tar in the VM failed (${line})`);
      for (const name of await readdir(this.workdir)) {
        if (name !== basename(staging)) await rm(join(this.workdir, name), { recursive: true, force: true });
      }
      for (const name of await readdir(staging)) await rename(join(staging, name), join(this.workdir, name));
    } finally {
      signal.removeEventListener('abort', onAbort);
      await rm(staging, { recursive: true, force: true });
    }
  }

  private serial<T>(f: () => Promise<T>): Promise<T> {
    const p = this.lock.then(f, f);
    this.lock = p.catch(() => {});
    return p;
  }
}

/**
 * Stands in for a ChildProcess so `supervise` (timer, abort, output pump) drives a step that
 * runs in the guest: output is written to its stdout/stderr; finish() ends them and emits
 * 'exit' and 'close' once they are drained. The real exit code is read from the agent's reply.
 */
class GuestStep extends EventEmitter {
  readonly stdout = new PassThrough();
  readonly stderr = new PassThrough();
  private finished = false;

  finish(): void {
    if (this.finished) return;
    this.finished = true;
    this.stdout.end();
    this.stderr.end();
    void Promise.all([ended(this.stdout), ended(this.stderr)]).then(() => {
      this.emit('exit', 0, null);
      this.emit('close', 0, null);
    });
  }

  kill(): boolean {
    this.finish();
    return true;
  }
}

function ended(s: Readable): Promise<void> {
  return new Promise((resolve) => {
    if (s.readableEnded || s.destroyed) return resolve();
    s.once('end', resolve);
    s.once('close', resolve);
  });
}

/** The shell text the agent runs: a clean environment, /work, then the step (sh -c or argv). */
export function stepScript(run: string | string[], env: Record<string, string>): string {
  const q = (s: string): string => `'${s.replace(/'/g, `'\\''`)}'`;
  const vars = [`PATH=${PATH}`, 'HOME=/root', ...Object.entries(env).map(([k, v]) => `${k}=${v}`)].map(q).join(' ');
  const cmd = typeof run === 'string' ? `/bin/sh -c ${q(run)}` : `/bin/sh -c 'exec "$@"' sh ${run.map(q).join(' ')}`;
  return `cd /work || exit 126\nexec env -i ${vars} ${cmd}\n`;
}
