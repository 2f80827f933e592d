import { createHash } from 'node:crypto';
import { existsSync } from 'node:fs';
import { copyFile, mkdir, mkdtemp, readdir, readFile, rename, rm, stat, writeFile } from 'node:fs/promises';
import { basename, join } from 'node:path';
import { gunzipSync, gzipSync } from 'node:zlib';
import { BUSYBOX_PATH, isStaticElf } from '../busybox-image.js';
import { AGENT_SCRIPT } from './agent-script.js';
import { cpioNewc, type CpioEntry } from './cpio.js';
import { reseedElf } from './reseed-elf.js';
import { runTool } from './run-tool.js';

/**
 * The guest's kernel and initramfs, built on first use and cached under `<cacheDir>`:
 *   kernel/<package>_<version>/{vmlinuz,package.deb}   from Debian's cloud kernel, via apt-get download
 *   initrd-<sha256 prefix>.gz                            busybox, modules, the agent and crowdbake-reseed; the name hashes
 *                                                        every input, so a new kernel or agent rebuilds it
 */

export const KERNEL_META_PACKAGE = 'linux-image-cloud-amd64';
/** Loaded in this order after their dependencies (resolved from each module's `depends=`). */
export const BASE_MODULES = ['virtio_mmio', 'virtio_console'];
export const DISK_MODULES = ['virtio_blk'];
export const NET_MODULES = ['virtio_net'];
const FORMAT = 'crowdbake-vm-initrd-1';

export interface GuestAssets {
  kernel: string;
  initrd: string;
  /** `<package>_<version>` of the kernel. */
  kernelId: string;
}

export interface AssetOptions {
  cacheDir: string;
  /** Debian package whose dependency names the kernel package (default linux-image-cloud-amd64). */
  metaPackage?: string;
  busybox?: string;
}

const inFlight = new Map<string, Promise<GuestAssets>>();

/** Returns the cached assets, building what is missing. Concurrent callers share one build. */
export function ensureGuestAssets(options: AssetOptions, progress: (line: string) => void): Promise<GuestAssets> {
  let p = inFlight.get(options.cacheDir);
  if (!p) {
    p = build(options, progress).finally(() => inFlight.delete(options.cacheDir));
    inFlight.set(options.cacheDir, p);
  }
  return p;
}

async function build(options: AssetOptions, progress: (line: string) => void): Promise<GuestAssets> {
  const kernel = await ensureKernel(options.cacheDir, options.metaPackage ?? KERNEL_META_PACKAGE, progress);
  const busybox = options.busybox ?? BUSYBOX_PATH;
  const bb = await readFile(busybox).catch(() => null);
  if (!bb || !isStaticElf(bb)) {
    throw new Error(`the vm executor needs Debian's busybox-static as the guest's userland (apt-get install busybox-static): ${busybox} is ${bb ? 'not statically linked' : 'missing'}`);
  }
  const key = createHash('sha256').update(JSON.stringify({
    FORMAT, agent: AGENT_SCRIPT, reseed: reseedElf().toString('hex'), kernel: kernel.id, busybox: createHash('sha256').update(bb).digest('hex'), BASE_MODULES, DISK_MODULES, NET_MODULES,
  })).digest('hex').slice(0, 16);
  const initrd = join(options.cacheDir, `initrd-${key}.gz`);
  if (!existsSync(initrd)) {
    progress(`vm: building the guest initramfs (busybox, virtio modules of ${kernel.id}, agent)`);
    const data = await buildInitrd(kernel.deb, busybox, bb, options.cacheDir);
    const tmp = `${initrd}.${process.pid}.tmp`;
    await writeFile(tmp, data);
    await rename(tmp, initrd);
    progress(`vm: built ${basename(initrd)} (${Math.round(data.length / 1024)} KiB)`);
    await prune(options.cacheDir, basename(initrd), kernel.id);
  }
  return { kernel: kernel.vmlinuz, initrd, kernelId: kernel.id };
}

/** After a rebuild: older initramfs images and kernels go (a running VM keeps its open files). */
async function prune(cacheDir: string, initrd: string, kernelId: string): Promise<void> {
  for (const f of await readdir(cacheDir).catch(() => [])) {
    if (/^initrd-[0-9a-f]+\.gz$/.test(f) && f !== initrd) await rm(join(cacheDir, f), { force: true });
  }
  for (const id of await readdir(join(cacheDir, 'kernel')).catch(() => [])) {
    if (!id.startsWith('.') && id !== kernelId) await rm(join(cacheDir, 'kernel', id), { recursive: true, force: true });
  }
}

interface KernelFiles { id: string; vmlinuz: string; deb: string }

async function ensureKernel(cacheDir: string, meta: string, progress: (line: string) => void): Promise<KernelFiles> {
  const root = join(cacheDir, 'kernel');
  let wanted: { name: string; version: string };
  try {
    wanted = await resolveKernelPackage(meta);
  } catch (e) {
    return cachedKernel(root, (e as Error).message, progress);
  }
  const id = `${wanted.name}_${wanted.version}`;
  const dir = join(root, id);
  const files = { id, vmlinuz: join(dir, 'vmlinuz'), deb: join(dir, 'package.deb') };
  if (existsSync(files.vmlinuz) && existsSync(files.deb)) return files;

  progress(`vm: downloading the guest kernel: Debian package ${wanted.name} ${wanted.version} (apt-get download)`);
  await mkdir(root, { recursive: true });
  const tmp = await mkdtemp(join(root, '.download-'));
  try {
    try {
      await runTool('apt-get', ['download', `${wanted.name}=${wanted.version}`], { cwd: tmp, timeoutMs: 15 * 60_000, installHint: 'a Debian or Ubuntu host is needed' });
    } catch (e) {
      return await cachedKernel(root, `apt-get download ${wanted.name} failed (${(e as Error).message}; try apt-get update)`, progress);
    }
    const deb = (await readdir(tmp)).find((f) => f.endsWith('.deb'));
    if (!deb) throw new Error(`apt-get download ${wanted.name} left no .deb in ${tmp}`);
    await rename(join(tmp, deb), join(tmp, 'package.deb'));
    const x = join(tmp, 'x');
    await runTool('dpkg-deb', ['-x', join(tmp, 'package.deb'), x], { timeoutMs: 5 * 60_000, installHint: 'apt-get install dpkg' });
    const image = (await readdir(join(x, 'boot')).catch(() => [])).find((f) => f.startsWith('vmlinuz-'));
    if (!image) throw new Error(`Debian package ${wanted.name} holds no boot/vmlinuz-*`);
    await copyFile(join(x, 'boot', image), join(tmp, 'vmlinuz'));
    await rm(x, { recursive: true, force: true });
    await rename(tmp, dir).catch(async (e: NodeJS.ErrnoException) => {
      if (!existsSync(files.vmlinuz)) throw e; // else another process finished first
    });
    progress(`vm: guest kernel ${image} ready`);
    return files;
  } finally {
    await rm(tmp, { recursive: true, force: true });
  }
}

/**
 * The kernel package the meta package currently depends on, and its version: `apt-cache show`
 * of linux-image-cloud-amd64 says "Depends: linux-image-6.1.0-56-cloud-amd64 (= 6.1.192-2)".
 */
async function resolveKernelPackage(meta: string): Promise<{ name: string; version: string }> {
  const hint = { installHint: 'the vm executor fetches its guest kernel with apt, so it needs a Debian or Ubuntu host', timeoutMs: 60_000 };
  const show = async (pkg: string): Promise<string> => {
    const r = await runTool('apt-cache', ['show', '--no-all-versions', pkg], { ...hint, allowFailure: true });
    if (r.code !== 0) throw new Error(`apt does not know the package ${pkg} (${r.stderr.trim().split('\n')[0] ?? ''}; try apt-get update)`);
    return r.stdout.toString();
  };
  const dep = /^Depends:.*?\b(linux-image-[A-Za-z0-9.+-]+)(?:\s*\(=\s*([^)\s]+)\))?/m.exec(await show(meta));
  if (!dep?.[1]) throw new Error(`the Debian package ${meta} depends on no linux-image package`);
  const name = dep[1];
  const version = dep[2] ?? /^Version:\s*(\S+)$/m.exec(await show(name))?.[1];
  if (!version || !/^[A-Za-z0-9.+~:-]+$/.test(version)) throw new Error(`no usable version of ${name} (got "${version ?? ''}")`);
  return { name, version };
}

/** The newest kernel already in the cache, when apt cannot give the current one. */
async function cachedKernel(root: string, why: string, progress: (line: string) => void): Promise<KernelFiles> {
  const found: { id: string; mtime: number }[] = [];
  for (const id of await readdir(root).catch(() => [])) {
    if (id.startsWith('.')) continue;
    const st = await stat(join(root, id, 'vmlinuz')).catch(() => null);
    if (st && existsSync(join(root, id, 'package.deb'))) found.push({ id, mtime: st.mtimeMs });
  }
  const best = found.sort((a, b) => b.mtime - a.mtime)[0];
  if (!best) throw new Error(`the vm executor needs a guest kernel from Debian's ${KERNEL_META_PACKAGE} package: ${why}`);
  progress(`vm: ${why}; using the cached guest kernel ${best.id}`);
  return { id: best.id, vmlinuz: join(root, best.id, 'vmlinuz'), deb: join(root, best.id, 'package.deb') };
}

async function buildInitrd(deb: string, busybox: string, bb: Buffer, cacheDir: string): Promise<Buffer> {
  const tmp = await mkdtemp(join(cacheDir, '.initrd-'));
  try {
    await runTool('dpkg-deb', ['-x', deb, tmp], { timeoutMs: 5 * 60_000, installHint: 'apt-get install dpkg' });
    const index = await indexModules(tmp);
    const base = await moduleOrder(BASE_MODULES, index, new Set());
    const disk = await moduleOrder(DISK_MODULES, index, new Set(base.map((m) => m.name)));
    const net = await moduleOrder(NET_MODULES, index, new Set(base.map((m) => m.name)));
    const { stdout } = await runTool(busybox, ['--list']);
    const applets = stdout.toString().split('\n').map((s) => s.trim()).filter((s) => s && s !== 'busybox' && !s.includes('/'));
    const entries: CpioEntry[] = [
      ...['bin', 'usr', 'dev', 'proc', 'sys', 'run', 'root', 'etc', 'etc/crowdbake', 'lib', 'lib/modules', 'mnt', 'work']
        .map((path) => ({ kind: 'dir' as const, path })),
      { kind: 'dir', path: 'tmp', mode: 0o1777 },
      { kind: 'symlink', path: 'sbin', target: 'bin' },
      { kind: 'symlink', path: 'usr/bin', target: '../bin' },
      { kind: 'symlink', path: 'usr/sbin', target: '../bin' },
      { kind: 'chardev', path: 'dev/console', major: 5, minor: 1 },
      { kind: 'chardev', path: 'dev/null', major: 1, minor: 3, mode: 0o666 },
      { kind: 'file', path: 'bin/busybox', data: bb, mode: 0o755 },
      ...applets.map((a) => ({ kind: 'symlink' as const, path: `bin/${a}`, target: 'busybox' })),
      { kind: 'file', path: 'init', data: Buffer.from(AGENT_SCRIPT), mode: 0o755 },
      { kind: 'file', path: 'bin/crowdbake-reseed', data: reseedElf(), mode: 0o755 },
      { kind: 'file', path: 'etc/passwd', data: Buffer.from('root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/nonexistent:/bin/false\n') },
      { kind: 'file', path: 'etc/group', data: Buffer.from('root:x:0:\nnogroup:x:65534:\n') },
      { kind: 'file', path: 'etc/crowdbake/modules', data: Buffer.from(`${base.map((m) => m.name).join(' ')}\n`) },
      { kind: 'file', path: 'etc/crowdbake/modules-disk', data: Buffer.from(`${disk.map((m) => m.name).join(' ')}\n`) },
      { kind: 'file', path: 'etc/crowdbake/modules-net', data: Buffer.from(`${net.map((m) => m.name).join(' ')}\n`) },
      ...[...base, ...disk, ...net].map((m) => ({ kind: 'file' as const, path: `lib/modules/${m.name}.ko`, data: m.data })),
    ];
    return gzipSync(cpioNewc(entries), { level: 9 });
  } finally {
    await rm(tmp, { recursive: true, force: true });
  }
}

export interface ModuleIndex { files: Map<string, string>; builtin: Set<string> }

const MODULE_FILE = /^(.+)\.ko(\.xz|\.zst|\.gz)?$/;
const modName = (file: string): string => (MODULE_FILE.exec(file)?.[1] ?? file).replace(/-/g, '_');

/** Every module file of the extracted package by name (dashes as underscores), and the built-in ones. */
export async function indexModules(root: string): Promise<ModuleIndex> {
  const versions = await readdir(join(root, 'lib/modules')).catch(() => []);
  const files = new Map<string, string>();
  const builtin = new Set<string>();
  for (const v of versions) {
    const walk = async (dir: string): Promise<void> => {
      for (const e of await readdir(dir, { withFileTypes: true })) {
        if (e.isDirectory()) await walk(join(dir, e.name));
        else if (MODULE_FILE.test(e.name)) files.set(modName(e.name), join(dir, e.name));
      }
    };
    await walk(join(root, 'lib/modules', v, 'kernel')).catch(() => {});
    const list = await readFile(join(root, 'lib/modules', v, 'modules.builtin'), 'utf8').catch(() => '');
    for (const line of list.split('\n')) if (line.trim()) builtin.add(modName(basename(line.trim())));
  }
  if (files.size === 0) throw new Error(`the guest kernel package holds no modules under lib/modules/*/kernel`);
  return { files, builtin };
}

/** The modules to load for `roots`, dependencies first, skipping those built in or already in `have`. */
export async function moduleOrder(roots: string[], index: ModuleIndex, have: Set<string>): Promise<{ name: string; data: Buffer }[]> {
  const out: { name: string; data: Buffer }[] = [];
  const visit = async (name: string, chain: string[]): Promise<void> => {
    if (have.has(name) || index.builtin.has(name)) return;
    if (chain.includes(name)) throw new Error(`module dependency cycle: ${[...chain, name].join(' → ')}`);
    const file = index.files.get(name);
    if (!file) throw new Error(`the guest kernel has no module ${name}${chain.length ? ` (needed by ${chain.at(-1)})` : ''}`);
    const data = await readModule(file);
    for (const dep of moduleDepends(data)) await visit(dep, [...chain, name]);
    if (have.has(name)) return;
    have.add(name);
    out.push({ name, data });
  };
  for (const r of roots) await visit(r, []);
  return out;
}

async function readModule(file: string): Promise<Buffer> {
  if (file.endsWith('.ko')) return readFile(file);
  if (file.endsWith('.gz')) return gunzipSync(await readFile(file));
  const tool = file.endsWith('.xz') ? 'xz' : 'zstd';
  return (await runTool(tool, ['-dc', file], { installHint: `apt-get install ${tool === 'xz' ? 'xz-utils' : 'zstd'}` })).stdout;
}

/** The `depends=a,b` entry of a module's .modinfo section. */
export function moduleDepends(ko: Buffer): string[] {
  const at = ko.indexOf('\0depends=');
  if (at < 0) return [];
  const start = at + '\0depends='.length;
  const end = ko.indexOf(0, start);
  return ko.subarray(start, end < 0 ? undefined : end).toString().split(',').map((s) => s.trim().replace(/-/g, '_')).filter(Boolean);
}
