import { existsSync } from 'node:fs';
import { readdir, readFile, stat } from 'node:fs/promises';
import { availableParallelism } from 'node:os';
import { delimiter, join, resolve } from 'node:path';
import { parseBaseRef, type BaseFile, type DiskFormat } from '../../../protocol/base-ref.js';
import type { EnvironmentSpec } from '../../../protocol/build-spec.js';
import { BaseFiles } from '../base-download.js';
import type { Availability, Executor, Sandbox, SandboxRequest } from '../executor.js';
import { BUSYBOX_PATH, isStaticElf } from '../busybox-image.js';
import { ensureGuestAssets, KERNEL_META_PACKAGE, type GuestAssets } from './assets.js';
import { checkDiskImage } from './disk-image.js';
import { cleanupRecords, GuestVm } from './guest-vm.js';
import { kvmCandidate, qemuVersion, type Accel } from './qemu.js';
import { VmSandbox } from './vm-sandbox.js';
import { VmSnapshots, type LaunchedFrom } from './vm-snapshot.js';

/**
 * Runs each build in a fresh QEMU microvm: Debian's cloud kernel, an initramfs with busybox and
 * a shell agent (PID 1), and optionally a user disk image behind a throwaway overlay. Nothing of
 * the host is shared: the workdir travels as tar over virtio-serial. KVM when it works, else
 * TCG emulation (several times slower, but the same isolation).
 *
 * Bases: `vm:busybox` (and plain `busybox`, the same Debian busybox-static userland) run in the
 * initramfs; `vm:NAME.qcow2` / `vm:NAME.img` (raw) from the volunteer's bases directory, or
 * `vm:https://….qcow2#sha256=HEX` downloaded and checked (base-download.ts), boot the same
 * kernel and chroot steps into the image's ext4 root (partition 1, or the whole disk). The
 * master never names a host path; every image is checked by disk-image.ts before QEMU opens it.
 */

export const MIN_MEMORY_MIB = 128;
export const DEFAULT_MEMORY_MIB = 256;
const ASSET_RECHECK_MS = 3_600_000;
const ID = /^[a-z0-9-]+$/;
const OWNER = /^[A-Za-z0-9._-]+$/;

export interface VmExecutorOptions {
  /** Identifies this worker; cleanupStale() kills only VMs recorded with it. */
  ownerId: string;
  /** Guest kernel and initramfs cache, and `running/` records: e.g. `<worker data>/vm`. */
  cacheDir: string;
  /** 'auto' (default) uses KVM when a probe boot works, else TCG. */
  accel?: 'auto' | Accel;
  /** Boot deadline; default 30 s under KVM, 90 s under TCG. */
  bootTimeoutMs?: number;
  /** Debian package that depends on the kernel package to use (default linux-image-cloud-amd64). */
  kernelMetaPackage?: string;
  /** The volunteer's directory of disk images for `vm:NAME` bases (`--bases-dir`). Default: none, such bases are refused. */
  basesDir?: string;
  /** Downloaded `vm:URL#sha256=…` images, by sha256. Default `<cacheDir>/downloads`. */
  downloadDir?: string;
  /**
   * Start builds from a saved, booted guest (vm-snapshot.ts, in `<cacheDir>/snapshots`) instead of
   * booting each. Default true, unless the environment has CROWDBAKE_VM_SNAPSHOTS=0.
   */
  snapshots?: boolean;
  /** The worker's log, for what concerns no one build (a snapshot saved, or unusable). Default: stderr. */
  log?: (line: string) => void;
}

/** A `vm:` disk base, before it is found on this worker. */
export interface DiskBase { file: BaseFile; format: DiskFormat }

export class VmExecutor implements Executor {
  readonly kind = 'vm' as const;
  readonly ownerId: string;
  readonly cacheDir: string;
  private assets: GuestAssets | null = null;
  private assetsAt = 0;
  private accel: Promise<Accel> | null = null;
  private decided: Accel | null = null;
  private readonly files: BaseFiles;
  private readonly snapshots: VmSnapshots | null;
  /** How each open sandbox's VM started, by sandbox id (for tests and the bench). */
  readonly launchedFrom = new Map<string, LaunchedFrom>();

  constructor(private readonly options: VmExecutorOptions) {
    if (!OWNER.test(options.ownerId)) throw new Error(`ownerId "${options.ownerId}" must be letters, digits, ".", "_" or "-"`);
    this.ownerId = options.ownerId;
    this.cacheDir = resolve(options.cacheDir);
    this.files = new BaseFiles({ basesDir: options.basesDir, downloadDir: options.downloadDir ?? join(this.cacheDir, 'downloads') });
    const useSnapshots = options.snapshots ?? process.env.CROWDBAKE_VM_SNAPSHOTS !== '0';
    const log = options.log ?? ((line: string) => { process.stderr.write(`${line}\n`); });
    this.snapshots = useSnapshots ? new VmSnapshots(join(this.cacheDir, 'snapshots'), log) : null;
  }

  /** The snapshot store, or null when builds boot cold. */
  get snapshotStore(): VmSnapshots | null {
    return this.snapshots;
  }

  /** QEMU runs, busybox-static is there, and a guest kernel is cached or apt-get can fetch one. */
  async isAvailable(): Promise<Availability> {
    try {
      await qemuVersion();
    } catch (e) {
      return { ok: false, reason: (e as Error).message };
    }
    const bb = await readFile(BUSYBOX_PATH).catch(() => null);
    if (!bb || !isStaticElf(bb)) return { ok: false, reason: `the guest's userland is Debian's busybox-static, and ${BUSYBOX_PATH} is ${bb ? 'not statically linked' : 'missing'} (apt-get install busybox-static)` };
    if (!onPath('apt-get') && !await hasCachedKernel(this.cacheDir)) {
      return { ok: false, reason: `the guest kernel comes from Debian's ${KERNEL_META_PACKAGE} via apt-get, which is not installed, and none is cached in ${this.cacheDir}` };
    }
    return { ok: true };
  }

  /** "KVM" or "TCG … (why not KVM)": the quick checks, or what prepare()'s probe boot decided. */
  describeAccel(): string {
    if (this.decided === 'kvm') return 'KVM';
    if (this.options.accel === 'tcg') return 'TCG emulation (configured)';
    const k = kvmCandidate();
    if (this.decided === 'tcg' && k.ok) return 'TCG emulation, slower (KVM is present but did not boot a VM)';
    return k.ok ? 'KVM' : `TCG emulation, slower (no KVM: ${k.reason})`;
  }

  cleanupStale(): Promise<number> {
    return cleanupRecords(this.stateDir, this.ownerId);
  }

  async prepare(environment: EnvironmentSpec, progress: (line: string) => void): Promise<void> {
    if (environment.setup.length > 0) {
      throw new Error(`setup steps are not supported yet (environment.setup has ${environment.setup.length})`);
    }
    const disk = parseBase(environment.base);
    if (disk) await this.diskImage(environment.base, disk, progress);
    // Asking apt for the current kernel takes a second or two: do it at most hourly.
    if (!this.assets || Date.now() - this.assetsAt > ASSET_RECHECK_MS || !existsSync(this.assets.initrd) || !existsSync(this.assets.kernel)) {
      this.assets = await ensureGuestAssets({ cacheDir: this.cacheDir, ...(this.options.kernelMetaPackage ? { metaPackage: this.options.kernelMetaPackage } : {}) }, progress);
      this.assetsAt = Date.now();
    }
    await this.chooseAccel(progress);
    progress(`vm: using ${this.describeAccel()}`);
  }

  async open(request: SandboxRequest): Promise<Sandbox> {
    if (!ID.test(request.id)) throw new Error(`sandbox id "${request.id}" must be [a-z0-9-]+`);
    const workdir = resolve(request.workdir);
    const st = await stat(workdir).catch(() => null);
    if (!st?.isDirectory()) throw new Error(`workdir ${workdir} is not a directory`);
    const base = parseBase(request.environment.base);
    if (!this.assets || !this.accel) await this.prepare(request.environment, () => {});
    // Checked again here, right before QEMU is given the file, whatever prepare() saw.
    const disk = base ? await this.diskImage(request.environment.base, base, () => {}) : null;
    const accel = await this.accel!;
    const { limits } = request;
    const memoryMiB = Math.max(MIN_MEMORY_MIB, limits.memoryBytes ? Math.floor(limits.memoryBytes / 1024 ** 2) : DEFAULT_MEMORY_MIB);
    const cpus = Math.min(Math.max(1, Math.ceil(limits.cpus ?? 1)), availableParallelism());
    const launch = {
      id: request.id, ownerId: this.ownerId, stateDir: this.stateDir, accel, memoryMiB, cpus,
      kernel: this.assets!.kernel, initrd: this.assets!.initrd, network: request.network,
      ...(disk ? { disk } : {}), setup: { ...(limits.pids ? { pids: limits.pids } : {}) },
      bootTimeoutMs: this.bootTimeout(accel),
    };
    const { vm, from } = await (this.snapshots ? this.snapshots.launch(launch) : GuestVm.launch(launch).then((v) => ({ vm: v, from: 'cold' as const })))
      .catch((e: Error) => { throw new Error(`could not start the build VM: ${e.message}`); });
    this.launchedFrom.set(request.id, from);
    void vm.exited.then(() => this.launchedFrom.delete(request.id));
    return VmSandbox.start(vm, workdir, limits.diskBytes);
  }

  /** Finds the image (bases directory or download) and checks it (disk-image.ts): the path QEMU may open. */
  private async diskImage(base: string, disk: DiskBase, progress: (line: string) => void): Promise<{ path: string; format: DiskFormat }> {
    const path = await this.files.locate(disk.file, base, progress);
    await checkDiskImage(path, disk.format, `base "${base}"`);
    return { path, format: disk.format };
  }

  private get stateDir(): string {
    return join(this.cacheDir, 'running');
  }

  private bootTimeout(accel: Accel): number {
    return this.options.bootTimeoutMs ?? (accel === 'kvm' ? 30_000 : 90_000);
  }

  /** KVM if asked or if the quick checks pass and a probe VM boots with it; otherwise TCG. */
  private chooseAccel(progress: (line: string) => void): Promise<Accel> {
    this.accel ??= (async (): Promise<Accel> => {
      const want = this.options.accel ?? 'auto';
      if (want !== 'auto') return want;
      if (!kvmCandidate().ok) return 'tcg';
      progress('vm: checking that a VM boots under KVM');
      const id = `probe-${process.pid}-${Date.now().toString(36)}`;
      try {
        const vm = await GuestVm.launch({
          id, ownerId: this.ownerId, stateDir: this.stateDir, accel: 'kvm', memoryMiB: MIN_MEMORY_MIB, cpus: 1,
          kernel: this.assets!.kernel, initrd: this.assets!.initrd, network: false, bootTimeoutMs: 20_000, setup: {},
        });
        await vm.shutdown();
        return 'kvm';
      } catch (e) {
        progress(`vm: KVM is present but a VM did not boot with it (${(e as Error).message}); using TCG emulation`);
        return 'tcg';
      }
    })().then((a) => (this.decided = a));
    return this.accel;
  }
}

/**
 * null for the initramfs userland, else the disk image to find and boot; throws for other
 * bases. The grammar is protocol/base-ref.ts (the master checks builder files with it): a spec
 * naming a host path (vm:/home/…/x.qcow2) is refused here before anything opens it.
 */
export function parseBase(base: string): DiskBase | null {
  const ref = parseBaseRef(base);
  if (ref.kind === 'busybox' || ref.kind === 'vm-busybox') return null;
  if (ref.kind === 'vm-disk') return { file: ref.file, format: ref.format };
  throw new Error(`base "${base}" is not supported by the vm executor (use vm:busybox, vm:NAME.qcow2 or vm:NAME.img from the bases directory, or vm:https://….qcow2#sha256=HEX)`);
}

function onPath(cmd: string): boolean {
  return (process.env.PATH ?? '/usr/bin:/bin').split(delimiter).some((d) => d && existsSync(join(d, cmd)));
}

async function hasCachedKernel(cacheDir: string): Promise<boolean> {
  const ids = await readdir(join(cacheDir, 'kernel')).catch(() => []);
  return ids.some((id) => !id.startsWith('.') && existsSync(join(cacheDir, 'kernel', id, 'vmlinuz')));
}
