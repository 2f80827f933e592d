import { closeSync, constants, openSync, readFileSync } from 'node:fs';
import type { Socket } from 'node:net';
import { join } from 'node:path';
import { runTool } from './run-tool.js';

/** QEMU pieces: availability, KVM detection, the command line, and a minimal QMP client. */

export const QEMU = 'qemu-system-x86_64';
export const QEMU_MISSING = 'qemu is not installed (apt-get install qemu-system-x86)';
/**
 * mitigations=off: the guest runs one build and nothing else, so there is no one inside to
 * protect from it; the host is protected by its own kernel. Saves boot time under TCG.
 * init_on_free=1: freed pages are zeroed, so a saved guest (vm-snapshot.ts) holds zero pages
 * where the boot's freed memory was, which QEMU's migration stream stores as flags: 53 MiB
 * instead of 81 MiB for a 256 MiB guest, and loading it took 140 instead of 280 ms (TCG, load 9).
 * Debian's kernel zeroes pages on allocation already (init_on_alloc); with init_on_free on it
 * skips that, so the zeroing moves from allocation to freeing rather than doubling.
 */
const KERNEL_ARGS = 'console=ttyS0 panic=-1 quiet mitigations=off init_on_free=1';
export const PORTS = ['ctl', 'out', 'err', 'data'] as const;
export type PortName = (typeof PORTS)[number];

export type Accel = 'kvm' | 'tcg';

/** "QEMU emulator version 7.2.22 …": rejects with QEMU_MISSING when the binary is absent. */
export async function qemuVersion(): Promise<string> {
  try {
    const r = await runTool(QEMU, ['--version'], { timeoutMs: 20_000 });
    return r.stdout.toString().split('\n')[0]?.trim() ?? '';
  } catch (e) {
    throw new Error(/is not installed/.test((e as Error).message) ? QEMU_MISSING : (e as Error).message);
  }
}

/**
 * Whether KVM could work here: the CPU advertises vmx/svm and /dev/kvm opens read-write. (Some
 * hosts have a /dev/kvm that boots nothing, e.g. nested PVM: the executor also probes a boot.)
 */
export function kvmCandidate(): { ok: boolean; reason: string } {
  let cpuinfo = '';
  try { cpuinfo = readFileSync('/proc/cpuinfo', 'utf8'); } catch { /* not Linux */ }
  if (!/^flags\s*:.*\b(vmx|svm)\b/m.test(cpuinfo)) return { ok: false, reason: 'the CPU shows no vmx/svm flag' };
  try {
    closeSync(openSync('/dev/kvm', constants.O_RDWR));
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code;
    return { ok: false, reason: code === 'EACCES' ? '/dev/kvm is not accessible (add the user to the kvm group)' : `/dev/kvm cannot be opened (${code})` };
  }
  return { ok: true, reason: 'vmx/svm and /dev/kvm present' };
}

export interface VmConfig {
  /** Unique per VM: shows in the command line (-name crowdbake-ID), which cleanupStale() checks. */
  id: string;
  accel: Accel;
  memoryMiB: number;
  cpus: number;
  kernel: string;
  initrd: string;
  network: boolean;
  disk?: { path: string; format: 'qcow2' | 'raw' };
  socketDir: string;
  /** Restore the guest from a saved state QEMU reads on its fd 3 (`-incoming fd:3`) instead of booting. */
  incoming?: boolean;
}

export function socketPath(dir: string, name: PortName | 'qmp'): string {
  return join(dir, `${name}.sock`);
}

/**
 * Under TCG the guest's TSC ticks at the host's TSC rate, and the kernel's early calibration of
 * it hangs 3-7 boots in 10: so TCG guests are told the rate (tsc_early_khz). /proc/cpuinfo's
 * "cpu MHz" is the TSC rate on VMs and constant-TSC CPUs; without it, 2 GHz (then the guest's
 * clock runs at host-rate/2 GHz speed; the agent still sets the date before every step).
 * tsc=reliable keeps the clocksource watchdog, confused by emulation, from dropping the TSC.
 */
export function hostTscKhz(cpuinfo?: string): number {
  let text = cpuinfo;
  if (text === undefined) {
    try { text = readFileSync('/proc/cpuinfo', 'utf8'); } catch { text = ''; }
  }
  const mhz = Number(/^cpu MHz\s*:\s*([\d.]+)/m.exec(text)?.[1]);
  return Number.isFinite(mhz) && mhz >= 500 && mhz <= 10_000 ? Math.round(mhz * 1000) : 2_000_000;
}

export function qemuArgs(c: VmConfig): string[] {
  const append = [KERNEL_ARGS, ...(c.accel === 'tcg' ? [`tsc_early_khz=${hostTscKhz()}`, 'tsc=reliable'] : []), `crowdbake.net=${c.network ? 1 : 0}`, `crowdbake.disk=${c.disk ? 1 : 0}`].join(' ');
  const args = [
    '-name', `crowdbake-${c.id}`,
    '-accel', c.accel, ...(c.accel === 'kvm' ? ['-cpu', 'host'] : []),
    '-M', 'microvm', '-m', String(c.memoryMiB), '-smp', String(c.cpus),
    '-nographic', '-no-reboot', '-nodefaults', '-serial', 'stdio',
    '-kernel', c.kernel, '-initrd', c.initrd, '-append', append,
    '-chardev', `socket,id=qmp,path=${socketPath(c.socketDir, 'qmp')}`, '-mon', 'chardev=qmp,mode=control',
    '-device', 'virtio-serial-device,max_ports=5',
  ];
  for (const p of PORTS) {
    args.push('-chardev', `socket,id=${p},path=${socketPath(c.socketDir, p)}`, '-device', `virtserialport,chardev=${p},name=${p}`);
  }
  if (c.network) args.push('-netdev', 'user,id=net0', '-device', 'virtio-net-device,netdev=net0');
  if (c.disk) {
    // snapshot=on: writes go to a temporary overlay QEMU deletes itself; the image is never changed.
    const file = c.disk.path.replace(/,/g, ',,');
    args.push('-drive', `file=${file},if=none,id=disk0,format=${c.disk.format},snapshot=on`, '-device', 'virtio-blk-device,drive=disk0');
  }
  // Digits name an inherited fd (QEMU's monitor_fd_param): no shell, no path in the command line.
  if (c.incoming) args.push('-incoming', 'fd:3');
  return args;
}

/** QMP over an accepted socket: capabilities handshake, then one command at a time. */
export class Qmp {
  private buf = '';
  private waiter: { resolve: (v: unknown) => void; reject: (e: Error) => void } | null = null;
  private chain: Promise<unknown> = Promise.resolve();
  private closed = false;

  private constructor(private readonly socket: Socket) {
    socket.setEncoding('utf8');
    socket.on('data', (d: string) => this.onData(d));
    socket.on('close', () => {
      this.closed = true;
      this.waiter?.reject(new Error('the QMP connection closed'));
      this.waiter = null;
    });
    socket.on('error', () => {});
  }

  static async start(socket: Socket): Promise<Qmp> {
    const q = new Qmp(socket);
    await q.next(); // greeting
    await q.execute('qmp_capabilities');
    return q;
  }

  execute(command: string, args?: Record<string, unknown>): Promise<unknown> {
    const run = async (): Promise<unknown> => {
      if (this.closed) throw new Error('the QMP connection is closed');
      const reply = this.next();
      this.socket.write(`${JSON.stringify(args ? { execute: command, arguments: args } : { execute: command })}\n`);
      return reply;
    };
    const p = this.chain.then(run, run);
    this.chain = p.catch(() => {});
    return p;
  }

  close(): void {
    this.socket.destroy();
  }

  private next(): Promise<unknown> {
    return new Promise((resolve, reject) => { this.waiter = { resolve, reject }; this.onData(''); });
  }

  private onData(d: string): void {
    this.buf += d;
    let nl: number;
    while (this.waiter && (nl = this.buf.indexOf('\n')) >= 0) {
      const line = this.buf.slice(0, nl).trim();
      this.buf = this.buf.slice(nl + 1);
      if (!line) continue;
      let msg: { event?: string; error?: { desc?: string }; return?: unknown; QMP?: unknown };
      try { msg = JSON.parse(line) as typeof msg; } catch { continue; }
      if (msg.event) continue;
      const w = this.waiter;
      this.waiter = null;
      if (msg.error) w.reject(new Error(`QMP: ${msg.error.desc ?? 'error'}`));
      else w.resolve(msg.return ?? msg.QMP);
    }
  }
}
