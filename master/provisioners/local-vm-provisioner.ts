import { spawn, type ChildProcess } from 'node:child_process';
import { closeSync, constants, createWriteStream, existsSync, lstatSync, mkdirSync, openSync, readFileSync, readlinkSync, realpathSync, rmSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { LocalVmProvisionerConfig } from '../config/master-config.js';
import type { ProvisionContext, Provisioner } from './provisioner.js';

/** A guest kernel and an initramfs whose /init is LOCAL_VM_INIT (with its module lists). */
export interface LocalVmGuest { kernel: string; initrd: string }

/** Builds (or finds cached) the guest kernel and initramfs; `progress` reports slow steps. */
export type LocalVmGuestBuilder = (progress: (line: string) => void) => Promise<LocalVmGuest>;

const QEMU = 'qemu-system-x86_64';
/** This Crowdbake's checkout or install: bin/crowdbake.js, dist/, node_modules. */
const ROOT = fileURLToPath(new URL('../../../', import.meta.url));

/**
 * Starts a Crowdbake worker inside a qemu microvm on the master's host and stops it again.
 *
 * The guest boots the kernel and initramfs from `guest`, mounts read-only 9p shares of the
 * host's /usr (and the merged-/usr links), node, this Crowdbake and the configured `share`
 * directories — never the master's data directory — and runs `crowdbake worker --executor host`
 * with the token from the master, dialing the master at 10.0.2.2 through QEMU's user network.
 * The worker's data and build directories live in the guest's RAM (tmpfs): `memory` bounds
 * them. stop() powers the VM off (SIGTERM to QEMU, then SIGKILL).
 *
 * Per VM the provisioner keeps DATA/provisioners/NAME.vm/: `cfg/` (shared with the guest:
 * `mounts`, `run` with the worker's token, mode 0600), `console.log` and `qemu.pid`.
 */
export class LocalVmProvisioner implements Provisioner {
  private child: ChildProcess | null = null;
  private readonly dir: string;

  constructor(
    private readonly config: LocalVmProvisionerConfig,
    dataDir: string,
    private readonly guest: LocalVmGuestBuilder | null,
  ) {
    this.dir = join(dataDir, 'provisioners', `${config.name}.vm`);
  }

  async start(ctx: ProvisionContext): Promise<void> {
    await this.stop(ctx);
    const guest = await this.guestFiles(ctx.log);
    const cfg = join(this.dir, 'cfg');
    mkdirSync(cfg, { recursive: true, mode: 0o700 });
    const shares = guestShares(this.config.share);
    writeFileSync(join(cfg, 'mounts'), shares.map((s) => (s.kind === 'mount' ? `mount ${s.tag} ${s.path}` : `link ${s.path} ${s.target}`)).join('\n') + '\n');
    writeFileSync(join(cfg, 'run'), workerScript(this.config, ctx), { mode: 0o600 });
    const accel = this.config.accel === 'auto' ? (kvmUsable() ? 'kvm' : 'tcg') : this.config.accel;
    const args = qemuArgs(this.config, guest, accel, cfg, shares);
    ctx.log(`booting ${this.config.name} (${accel}, ${this.config.cpus} CPUs, ${Math.round(this.config.memory / 1024 ** 2)} MiB); console in ${join(this.dir, 'console.log')}`);
    const consoleLog = createWriteStream(join(this.dir, 'console.log'));
    const child = spawn(QEMU, args, { stdio: ['ignore', 'pipe', 'pipe'] });
    child.stdout!.pipe(consoleLog);
    child.stderr!.pipe(consoleLog);
    await new Promise<void>((ok, fail) => {
      child.once('spawn', ok);
      child.once('error', (e: NodeJS.ErrnoException) =>
        fail(new Error(e.code === 'ENOENT' ? `${QEMU} is not installed (apt-get install qemu-system-x86)` : `${QEMU}: ${e.message}`)));
    });
    this.child = child;
    writeFileSync(join(this.dir, 'qemu.pid'), `${child.pid}\n`);
    child.once('exit', (code, signal) => {
      const why = `the VM exited (${signal ?? `code ${code}`})`;
      ctx.log(why);
      if (this.child !== child) return; // stop() asked for it
      this.child = null;
      ctx.exited?.(`${why} by itself; see ${join(this.dir, 'console.log')}`);
    });
  }

  async stop(_ctx: ProvisionContext): Promise<void> {
    const child = this.child;
    this.child = null;
    if (child && child.exitCode === null && child.signalCode === null) {
      const exited = new Promise<void>((ok) => child.once('exit', () => ok()));
      child.kill('SIGTERM');
      const timer = setTimeout(() => child.kill('SIGKILL'), 5000);
      await exited;
      clearTimeout(timer);
    } else {
      killStale(join(this.dir, 'qemu.pid'));
    }
    rmSync(join(this.dir, 'cfg'), { recursive: true, force: true });
    rmSync(join(this.dir, 'qemu.pid'), { force: true });
  }

  private async guestFiles(log: (line: string) => void): Promise<LocalVmGuest> {
    if (this.config.kernel && this.config.initrd) {
      for (const f of [this.config.kernel, this.config.initrd]) if (!existsSync(f)) throw new Error(`local-vm ${this.config.name}: ${f} does not exist`);
      return { kernel: this.config.kernel, initrd: this.config.initrd };
    }
    if (!this.guest) throw new Error(`local-vm ${this.config.name}: no guest kernel; give kernel: and initrd: in crowdbake.yml`);
    return this.guest(log);
  }
}

type Share = { kind: 'mount'; tag: string; path: string } | { kind: 'link'; path: string; target: string };

/**
 * What the guest sees of the host, read-only: /usr and what links into it (/bin, /lib, …),
 * node's own directory when it lives elsewhere, this Crowdbake (and where its node_modules
 * really is), and the extra `share` directories. Links first, then mounts, parents before
 * children.
 */
export function guestShares(extra: string[]): Share[] {
  const wanted = new Set<string>(['/usr', dirname(dirname(realpathSync(process.execPath))), realpathSync(ROOT)]);
  const modules = join(ROOT, 'node_modules');
  if (existsSync(modules)) wanted.add(realpathSync(modules));
  for (const p of extra) wanted.add(p);
  const out: Share[] = [];
  for (const top of ['/bin', '/sbin', '/lib', '/lib32', '/lib64', '/libx32']) {
    const st = lstatSync(top, { throwIfNoEntry: false });
    if (st?.isSymbolicLink()) out.push({ kind: 'link', path: top, target: readlinkSync(top) });
    else if (st?.isDirectory()) wanted.add(top);
  }
  const paths = [...wanted].filter((p) => existsSync(p)).sort();
  // A directory inside another shared one is already visible.
  const roots = paths.filter((p) => !paths.some((q) => q !== p && (p.startsWith(`${q}/`) || q === '/')));
  roots.forEach((path, i) => out.push({ kind: 'mount', tag: `cb${i}`, path }));
  return out;
}

function workerScript(c: LocalVmProvisionerConfig, ctx: ProvisionContext): string {
  const url = new URL(ctx.masterUrl);
  // From inside the guest, the host's loopback is 10.0.2.2.
  if (['127.0.0.1', 'localhost', '[::1]', '0.0.0.0'].includes(url.hostname)) url.hostname = '10.0.2.2';
  const argv = [
    realpathSync(process.execPath), join(realpathSync(ROOT), 'bin', 'crowdbake.js'), 'worker',
    '--master', url.toString(), '--token', ctx.token, '--executor', 'host', '--when', 'always', '--idle-source', 'none',
    '--data', '/tmp/crowdbake-worker', '--cpus', String(c.cpus),
    ...(ctx.labels.length ? ['--labels', ctx.labels.join(',')] : []),
  ];
  return `export HOME=/root PATH=/usr/local/bin:/usr/bin:/bin:/usr/sbin:/sbin\nexec ${argv.map(shellQuote).join(' ')}\n`;
}

function qemuArgs(c: LocalVmProvisionerConfig, guest: LocalVmGuest, accel: 'kvm' | 'tcg', cfg: string, shares: Share[]): string[] {
  const append = ['console=ttyS0', 'panic=-1', 'quiet', 'mitigations=off', ...(accel === 'tcg' ? [`tsc_early_khz=${hostTscKhz()}`, 'tsc=reliable'] : [])].join(' ');
  const fs = (id: string, path: string, tag: string) => [
    '-fsdev', `local,id=${id},path=${path.replace(/,/g, ',,')},security_model=none,readonly=on`,
    '-device', `virtio-9p-device,fsdev=${id},mount_tag=${tag}`,
  ];
  return [
    '-name', `crowdbake-local-vm-${c.name}`,
    '-accel', accel, ...(accel === 'kvm' ? ['-cpu', 'host'] : []),
    '-M', 'microvm', '-m', String(Math.round(c.memory / 1024 ** 2)), '-smp', String(c.cpus),
    '-nographic', '-no-reboot', '-nodefaults', '-serial', 'stdio',
    '-kernel', guest.kernel, '-initrd', guest.initrd, '-append', append,
    '-netdev', 'user,id=net0', '-device', 'virtio-net-device,netdev=net0',
    ...fs('cfg', cfg, 'cbcfg'),
    ...shares.flatMap((s) => (s.kind === 'mount' ? fs(s.tag, s.path, s.tag) : [])),
  ];
}

/** KVM when the CPU has vmx/svm and /dev/kvm opens; else QEMU emulates (TCG). */
function kvmUsable(): boolean {
  try {
    if (!/^flags\s*:.*\b(vmx|svm)\b/m.test(readFileSync('/proc/cpuinfo', 'utf8'))) return false;
    closeSync(openSync('/dev/kvm', constants.O_RDWR));
    return true;
  } catch {
    return false;
  }
}

/** Under TCG the guest kernel is told the TSC rate: calibrating it under emulation can hang the boot. */
function hostTscKhz(): number {
  let text = '';
  try { text = readFileSync('/proc/cpuinfo', 'utf8'); } catch { /* not Linux */ }
  const mhz = Number(/^cpu MHz\s*:\s*([\d.]+)/m.exec(text)?.[1]);
  return Number.isFinite(mhz) && mhz >= 500 && mhz <= 10_000 ? Math.round(mhz * 1000) : 2_000_000;
}

/** A QEMU left running by a master that died: killed when its pid still runs our VM. */
function killStale(pidFile: string): void {
  let pid: number;
  try { pid = Number(readFileSync(pidFile, 'utf8').trim()); } catch { return; }
  try {
    if (!readFileSync(`/proc/${pid}/cmdline`, 'utf8').includes('crowdbake-local-vm-')) return;
    process.kill(pid, 'SIGKILL');
  } catch { /* gone */ }
}

function shellQuote(s: string): string {
  return /^[A-Za-z0-9_./:=,@+-]+$/.test(s) ? s : `'${s.replace(/'/g, `'\\''`)}'`;
}
