import { createHash } from 'node:crypto';
import { existsSync } from 'node:fs';
import { mkdtemp, readFile, rename, rm, writeFile } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import { gzipSync } from 'node:zlib';
import { LOCAL_VM_INIT } from '../master/provisioners/local-vm-init.js';
import type { LocalVmGuest, LocalVmGuestBuilder } from '../master/provisioners/local-vm-provisioner.js';
import { BASE_MODULES, ensureGuestAssets, indexModules, moduleOrder, NET_MODULES } from '../worker/executors/vm/assets.js';
import { cpioNewc } from '../worker/executors/vm/cpio.js';
import { runTool } from '../worker/executors/vm/run-tool.js';

/**
 * Debian's full kernel: unlike the cloud kernel the vm executor boots, it has 9p, which the
 * local-vm guest mounts the host's directories with.
 */
export const LOCAL_VM_KERNEL_PACKAGE = 'linux-image-amd64';
const NINEP_MODULES = ['9pnet_virtio', '9p'];

/**
 * The local-vm guest: the vm executor's kernel and initramfs (busybox, virtio modules), built
 * from LOCAL_VM_KERNEL_PACKAGE in `cacheDir`, followed by a second cpio archive that adds the
 * 9p modules and replaces /init with LOCAL_VM_INIT (the kernel unpacks concatenated archives
 * in order). Cached under a name that hashes its inputs.
 */
export function localVmGuestBuilder(cacheDir: string): LocalVmGuestBuilder {
  let building: Promise<LocalVmGuest> | null = null;
  return (progress) => (building ??= build(cacheDir, progress).finally(() => { building = null; }));
}

async function build(cacheDir: string, progress: (line: string) => void): Promise<LocalVmGuest> {
  const base = await ensureGuestAssets({ cacheDir, metaPackage: LOCAL_VM_KERNEL_PACKAGE }, progress);
  const key = createHash('sha256').update(JSON.stringify({ init: LOCAL_VM_INIT, base: base.initrd, NINEP_MODULES })).digest('hex').slice(0, 16);
  const initrd = join(cacheDir, `local-vm-initrd-${key}.img`);
  if (existsSync(initrd)) return { kernel: base.kernel, initrd };
  progress(`local-vm: adding 9p and the worker's /init to the guest initramfs of ${base.kernelId}`);
  const tmp = await mkdtemp(join(cacheDir, '.local-vm-'));
  try {
    await runTool('dpkg-deb', ['-x', join(dirname(base.kernel), 'package.deb'), tmp], { timeoutMs: 5 * 60_000, installHint: 'apt-get install dpkg' });
    const index = await indexModules(tmp);
    const have = new Set<string>();
    for (const m of [...await moduleOrder(BASE_MODULES, index, have), ...await moduleOrder(NET_MODULES, index, have)]) have.add(m.name);
    const ninep = await moduleOrder(NINEP_MODULES, index, have);
    const overlay = gzipSync(cpioNewc([
      { kind: 'file', path: 'init', data: Buffer.from(LOCAL_VM_INIT), mode: 0o755 },
      { kind: 'file', path: 'etc/crowdbake/modules-9p', data: Buffer.from(`${ninep.map((m) => m.name).join(' ')}\n`) },
      ...ninep.map((m) => ({ kind: 'file' as const, path: `lib/modules/${m.name}.ko`, data: m.data })),
    ]));
    const out = `${initrd}.${process.pid}.tmp`;
    await writeFile(out, Buffer.concat([await readFile(base.initrd), overlay]));
    await rename(out, initrd);
    return { kernel: base.kernel, initrd };
  } finally {
    await rm(tmp, { recursive: true, force: true });
  }
}
