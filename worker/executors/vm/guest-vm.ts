import { spawn, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { closeSync, createWriteStream, openSync, readFileSync } from 'node:fs';
import { mkdir, mkdtemp, readdir, readFile, rm, writeFile } from 'node:fs/promises';
import { createServer, type Server, type Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pipeline } from 'node:stream/promises';
import { formatLimit } from '../step-support.js';
import { GuestLink } from './guest-link.js';
import { PORTS, QEMU, QEMU_MISSING, Qmp, qemuArgs, socketPath, type PortName, type VmConfig } from './qemu.js';
import { lastLines } from './run-tool.js';

/**
 * One running QEMU: its process, the agent link, QMP, and the record in the state dir that
 * lets a later worker (cleanupStale) find it if this process dies. The host listens on unix
 * sockets in a private temp dir and QEMU connects to them at start-up.
 */

export interface LaunchOptions extends Omit<VmConfig, 'socketDir' | 'incoming'> {
  ownerId: string;
  /** Where running VMs are recorded: `<stateDir>/<id>.json`. */
  stateDir: string;
  /** Until the agent is parked (boot), or the saved state is loaded and running (restore). */
  bootTimeoutMs: number;
  /** Restore this saved state (vm-snapshot.ts; given to QEMU as an open fd) instead of booting. */
  restoreFrom?: string;
  /** The build's own settings, sent once the guest is parked or restored; null leaves it parked (to be saved). */
  setup: GuestSetup | null;
}

/** What differs between builds of one machine shape: never in a snapshot, sent after it is restored. */
export interface GuestSetup {
  /** The pids limit of the build's steps; 0 or absent: none. */
  pids?: number;
}

export interface VmRecord {
  id: string;
  owner: string;
  pid: number;
  socketDir: string;
  startedAt: string;
}

const CONSOLE_KEEP = 8192;

export class GuestVm {
  private console = '';
  private stderr = '';
  private stopping: Promise<void> | undefined;
  readonly exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
  exitStatus: { code: number | null; signal: NodeJS.Signals | null } | null = null;
  link!: GuestLink;
  qmp!: Qmp;

  private constructor(
    private readonly child: ChildProcess,
    readonly options: LaunchOptions,
    readonly socketDir: string,
    private readonly servers: Server[],
  ) {
    child.stdout?.on('data', (c: Buffer) => { this.console = (this.console + c.toString()).slice(-CONSOLE_KEEP); });
    child.stderr?.on('data', (c: Buffer) => { this.stderr = (this.stderr + c.toString()).slice(-CONSOLE_KEEP); });
    this.exited = new Promise((resolve) => {
      child.on('error', () => { this.exitStatus ??= { code: null, signal: null }; resolve(this.exitStatus); });
      child.on('exit', (code, signal) => { this.exitStatus = { code, signal }; resolve(this.exitStatus); });
    });
  }

  get pid(): number | undefined {
    return this.child.pid;
  }

  /** Starts QEMU and waits until the agent says it is ready. On failure, nothing is left behind. */
  static async launch(o: LaunchOptions): Promise<GuestVm> {
    const socketDir = await mkdtemp(join(tmpdir(), 'cbvm-'));
    const servers: Server[] = [];
    const accepted = new Map<string, Promise<Socket>>();
    for (const name of [...PORTS, 'qmp'] as const) {
      const server = createServer();
      servers.push(server);
      accepted.set(name, new Promise((resolve) => server.once('connection', (sock: Socket) => {
        sock.on('error', () => {}); // a QEMU that dies resets its sockets; 'close' tells the rest
        resolve(sock);
      })));
      await new Promise<void>((resolve, reject) => {
        server.once('error', reject);
        server.listen(socketPath(socketDir, name), resolve);
      });
      server.on('error', () => {});
    }
    let stateFd: number | null = null;
    if (o.restoreFrom) {
      try {
        stateFd = openSync(o.restoreFrom, 'r');
      } catch (e) {
        for (const s of servers) s.close();
        await rm(socketDir, { recursive: true, force: true });
        throw new Error(`cannot open the saved VM state: ${(e as Error).message}`);
      }
    }
    const child = spawn(QEMU, qemuArgs({ ...o, socketDir, incoming: stateFd !== null }), { stdio: ['ignore', 'pipe', 'pipe', ...(stateFd !== null ? [stateFd] : [])] });
    if (stateFd !== null) closeSync(stateFd); // QEMU holds its own copy
    const vm = new GuestVm(child, o, socketDir, servers);
    const spawned = await new Promise<NodeJS.ErrnoException | null>((resolve) => {
      child.once('spawn', () => resolve(null));
      child.once('error', resolve);
    });
    if (spawned) {
      await vm.shutdown();
      throw new Error(spawned.code === 'ENOENT' ? QEMU_MISSING : `could not start ${QEMU}: ${spawned.message}`);
    }
    try {
      await vm.writeRecord();
      const sockets = await vm.within(10_000, 'QEMU did not connect to its channels', Promise.all([...accepted.values()]));
      const byName = Object.fromEntries([...accepted.keys()].map((k, i) => [k, sockets[i]!])) as Record<PortName | 'qmp', Socket>;
      for (const s of servers) s.close();
      vm.qmp = await vm.within(10_000, 'QEMU did not answer on QMP', Qmp.start(byName.qmp));
      vm.link = new GuestLink(byName);
      if (o.restoreFrom) {
        await vm.within(o.bootTimeoutMs, `the saved VM state did not load within ${formatLimit(o.bootTimeoutMs)}`, vm.untilRunning());
      } else {
        const first = await vm.within(o.bootTimeoutMs, `the VM did not finish booting within ${formatLimit(o.bootTimeoutMs)} (${o.accel.toUpperCase()})`, vm.link.nextLine());
        if (first !== 'parked') throw new Error(first.startsWith('fail ') ? `the VM's agent failed: ${first.slice(5)}` : `the VM's agent said "${first}" instead of parked`);
      }
      if (o.setup) await vm.configure(o.setup);
      return vm;
    } catch (e) {
      // A channel closing first hides why: if QEMU exited, say how and what it printed.
      const exit = await settleWithin(vm.exited, 500);
      const message = exit && !/^the VM (stopped|was killed)/.test((e as Error).message)
        ? `${vm.describeExit(exit)}${vm.diagnostics()}` : (e as Error).message;
      await vm.shutdown();
      throw new Error(message);
    }
  }

  /**
   * The build's settings, fresh for each VM: the clock, 32 random bytes the guest's kernel RNG is
   * reseeded with (a restored guest would otherwise repeat the snapshot's random stream), the pids
   * limit; the agent then brings up the network and mounts the disk and answers "ready".
   */
  async configure(setup: GuestSetup): Promise<void> {
    const reply = this.link.nextLine();
    reply.catch(() => {});
    this.link.send(`setup ${Math.floor(Date.now() / 1000)} ${setup.pids ?? 0} ${randomBytes(32).toString('base64')}`);
    const line = await this.within(60_000, 'the VM\'s agent did not finish its setup', reply);
    if (line !== 'ready') throw new Error(line.startsWith('fail ') ? `the VM's agent failed: ${line.slice(5)}` : `the VM's agent said "${line}" instead of ready`);
  }

  /**
   * Saves the stopped guest's whole state (RAM, devices) into `file` (created, must not exist),
   * through a unix socket of ours QEMU migrates to. The VM stays stopped; the caller quits it.
   */
  async saveState(file: string): Promise<void> {
    const path = join(this.socketDir, 'migrate.sock');
    const server = createServer();
    await new Promise<void>((resolve, reject) => { server.once('error', reject); server.listen(path, resolve); });
    const written = new Promise<void>((resolve, reject) => server.once('connection', (sock: Socket) => {
      pipeline(sock, createWriteStream(file, { flags: 'wx', mode: 0o600 })).then(resolve, reject);
    }));
    written.catch(() => {});
    try {
      await this.qmp.execute('stop');
      // QEMU's default migration bandwidth is 32 MiB/s; this is a local file.
      await this.qmp.execute('migrate-set-parameters', { 'max-bandwidth': 1e12 });
      await this.qmp.execute('migrate', { uri: `unix:${path}` });
      for (;;) {
        const r = await this.qmp.execute('query-migrate') as { status?: string; 'error-desc'?: string };
        if (r.status === 'completed') break;
        if (r.status === 'failed' || r.status === 'cancelled') throw new Error(`QEMU could not save the VM: ${r['error-desc'] ?? r.status}`);
        await sleep(5);
      }
      await this.within(60_000, 'writing the saved VM state timed out', written);
    } finally {
      server.close();
    }
  }

  /**
   * After `-incoming`: resolves once the loaded guest runs; rejects if QEMU ends in any other
   * state. The state was saved stopped, so QEMU leaves it paused once loaded: then `cont`.
   */
  private async untilRunning(): Promise<void> {
    for (;;) {
      const r = await this.qmp.execute('query-status') as { status?: string };
      if (r.status === 'running') return;
      if (r.status === 'paused') {
        await this.qmp.execute('cont');
        continue;
      }
      if (r.status !== 'inmigrate' && r.status !== 'prelaunch') throw new Error(`the restored VM is ${r.status ?? 'in no known state'}${this.diagnostics()}`);
      await sleep(2);
    }
  }

  /** Races `p` against QEMU exiting and a deadline; the error carries the console's last lines. */
  async within<T>(ms: number, what: string, p: Promise<T>): Promise<T> {
    let timer: NodeJS.Timeout | undefined;
    const deadline = new Promise<never>((_, reject) => { timer = setTimeout(() => reject(new Error(`${what}${this.diagnostics()}`)), ms); });
    const died = this.exited.then((s) => { throw new Error(`${this.describeExit(s)}${this.diagnostics()}`); });
    died.catch(() => {});
    try {
      return await Promise.race([p, deadline, died]);
    } finally {
      clearTimeout(timer);
    }
  }

  describeExit(s: { code: number | null; signal: NodeJS.Signals | null } | null = this.exitStatus): string {
    if (!s) return 'the VM is running';
    return s.signal ? `the VM was killed by ${s.signal}` : `the VM stopped (qemu exit code ${s.code})`;
  }

  /** "; qemu said: …; console: …" with the last lines of each, or "". */
  diagnostics(): string {
    const err = lastLines(this.stderr, 2);
    // A panic's stack trace says less than its first line; the agent's own messages say most.
    const telling = this.console.split('\n').filter((l) => /Kernel panic|crowdbake-agent:|Out of memory/.test(l));
    const con = telling.length > 0 ? lastLines(telling.join('\n'), 2) : lastLines(this.console, 3);
    return `${err ? `; qemu said: ${err}` : ''}${con ? `; console: ${con}` : ''}`;
  }

  /** SIGKILL now (timeout, cancel): the build cannot continue. */
  kill(): void {
    if (this.exitStatus === null) this.child.kill('SIGKILL');
  }

  /** Quits QEMU (QMP quit, then SIGKILL), removes its sockets and record. Idempotent. */
  shutdown(): Promise<void> {
    this.stopping ??= (async () => {
      for (const s of this.servers) s.close();
      if (this.exitStatus === null && this.child.pid !== undefined) {
        if (this.qmp) await settleWithin(this.qmp.execute('quit').catch(() => {}), 1000);
        if (!await settleWithin(this.exited.then(() => true), 2000)) {
          this.child.kill('SIGKILL');
          await settleWithin(this.exited, 5000);
        }
      }
      this.link?.close(new Error('the VM was shut down'));
      this.qmp?.close();
      await rm(this.socketDir, { recursive: true, force: true });
      await rm(recordPath(this.options.stateDir, this.options.id), { force: true });
    })();
    return this.stopping;
  }

  private async writeRecord(): Promise<void> {
    const rec: VmRecord = { id: this.options.id, owner: this.options.ownerId, pid: this.child.pid!, socketDir: this.socketDir, startedAt: new Date().toISOString() };
    await mkdir(this.options.stateDir, { recursive: true });
    await writeFile(recordPath(this.options.stateDir, this.options.id), `${JSON.stringify(rec)}\n`);
  }
}

function recordPath(stateDir: string, id: string): string {
  return join(stateDir, `${id}.json`);
}

function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

/** `p`'s value, or undefined after `ms`; the timer does not outlive the race. */
async function settleWithin<T>(p: Promise<T>, ms: number): Promise<T | undefined> {
  let timer: NodeJS.Timeout | undefined;
  try {
    return await Promise.race([p, new Promise<undefined>((resolve) => { timer = setTimeout(() => resolve(undefined), ms); })]);
  } finally {
    clearTimeout(timer);
  }
}

/**
 * Kills the VMs recorded for `owner` (checking the pid still is that VM's QEMU), removes their
 * sockets and records; returns how many of `owner`'s records were cleaned up. Records of
 * other owners whose QEMU is gone are removed too (uncounted); their live VMs are left alone.
 */
export async function cleanupRecords(stateDir: string, owner: string): Promise<number> {
  let count = 0;
  for (const f of await readdir(stateDir).catch(() => [])) {
    if (!f.endsWith('.json')) continue;
    let rec: VmRecord;
    try {
      rec = JSON.parse(await readFile(join(stateDir, f), 'utf8')) as VmRecord;
    } catch {
      continue; // being written, or not ours to judge
    }
    const running = isQemuOf(rec.pid, rec.id);
    if (rec.owner !== owner && running) continue;
    if (running) {
      try { process.kill(rec.pid, 'SIGKILL'); } catch { /* gone meanwhile */ }
      for (let i = 0; i < 50 && isQemuOf(rec.pid, rec.id); i++) await sleep(20);
    }
    if (typeof rec.socketDir === 'string' && rec.socketDir.startsWith(join(tmpdir(), 'cbvm-'))) {
      await rm(rec.socketDir, { recursive: true, force: true });
    }
    await rm(join(stateDir, f), { force: true });
    if (rec.owner === owner) count++;
  }
  return count;
}

/** True while `pid` is a live (not zombie) QEMU started for VM `id`. */
function isQemuOf(pid: number, id: string): boolean {
  if (!Number.isInteger(pid) || pid <= 0) return false;
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    if (stat.slice(stat.lastIndexOf(')') + 2).startsWith('Z')) return false;
    return readFileSync(`/proc/${pid}/cmdline`, 'utf8').split('\0').includes(`crowdbake-${id}`);
  } catch {
    return false;
  }
}
