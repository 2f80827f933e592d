import { existsSync } from 'node:fs';
import { mkdir, mkdtemp, readdir, readFile, rm, stat } from 'node:fs/promises';
import { join } from 'node:path';
import { importRootfs } from '../busybox-image.js';
import { ENV_LABEL, KEY_LABEL } from './keys.js';
import { runLines } from './run-lines.js';
import type { Progress } from './shared-build.js';

/**
 * `debootstrap:SUITE`: debootstrap --variant=minbase SUITE DIR MIRROR on the host (as root),
 * then `tar -C DIR -c . | podman import` with a Debian PATH. Downloaded .debs and apt lists
 * are left out of the image (setup lines start with `apt-get update`, as on Docker's Debian
 * images). The directory is removed in every case, after unmounting anything debootstrap
 * left mounted in it.
 */

export const DEBIAN_PATH = '/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin';
const SCRIPTS = '/usr/share/debootstrap/scripts';
const DEBOOTSTRAP_BINS = ['/usr/sbin/debootstrap', '/usr/bin/debootstrap', '/sbin/debootstrap', '/bin/debootstrap'];

export interface DebootstrapRequest {
  suite: string;
  mirror: string;
  variant: string;
  /** Image tag to create. */
  tag: string;
  key: string;
  /** A directory for the temporary root (not on a noexec or nodev mount). */
  tmpRoot: string;
  timeoutMs: number;
}

export async function debootstrapImage(r: DebootstrapRequest, progress: Progress): Promise<void> {
  const bin = DEBOOTSTRAP_BINS.find((p) => existsSync(p));
  if (!bin) throw new Error(`base debootstrap:${r.suite} needs debootstrap on the worker (apt-get install debootstrap)`);
  if (process.getuid?.() !== 0) {
    throw new Error(`base debootstrap:${r.suite} needs the worker to run as root (debootstrap creates device files and chroots); `
      + 'use an image: or rootfs: base instead, or run the worker as root');
  }
  if (!existsSync(join(SCRIPTS, r.suite))) {
    throw new Error(`base debootstrap:${r.suite}: debootstrap does not know suite "${r.suite}" (no ${join(SCRIPTS, r.suite)}; a newer debootstrap may)`);
  }
  await mkdir(r.tmpRoot, { recursive: true, mode: 0o700 });
  await removeAbandoned(r.tmpRoot, r.timeoutMs + 10 * 60_000);
  const dir = await mkdtemp(join(r.tmpRoot, `debootstrap-${r.suite}-`));
  const root = join(dir, 'root');
  try {
    const started = Date.now();
    progress(`debootstrap --variant=${r.variant} ${r.suite} ${r.mirror} (takes a few minutes)`);
    const result = await runLines(bin, [`--variant=${r.variant}`, '--force-check-gpg', r.suite, root, r.mirror], {
      onLine: progress, timeoutMs: r.timeoutMs, group: true,
    });
    if (result.timedOut) throw new Error(`debootstrap ${r.suite} did not finish within ${Math.round(r.timeoutMs / 1000)} s`);
    if (result.code !== 0) {
      const why = result.tail.filter((l) => l.startsWith('E: ')).map((l) => l.slice(3)).join('; ')
        || result.tail.slice(-3).join(' / ') || 'no output';
      throw new Error(`debootstrap ${r.suite} ${r.mirror} failed with exit code ${result.code}: ${why}`);
    }
    progress(`debootstrap finished in ${((Date.now() - started) / 1000).toFixed(1)} s; importing as ${r.tag}`);
    await unmountUnder(dir);
    await importRootfs(root, r.tag, {
      changes: [`ENV PATH=${DEBIAN_PATH}`, `LABEL ${ENV_LABEL}=1`, `LABEL ${KEY_LABEL}=${r.key}`],
      excludes: ['./var/cache/apt/archives/*.deb', './var/lib/apt/lists/*_*'],
      timeoutMs: r.timeoutMs,
    });
  } finally {
    await unmountUnder(dir).catch(() => {});
    await rm(dir, { recursive: true, force: true });
  }
}

/** Removes debootstrap directories a crashed worker left behind: older than any debootstrap may run. */
async function removeAbandoned(tmpRoot: string, olderThanMs: number): Promise<void> {
  for (const name of await readdir(tmpRoot).catch(() => [])) {
    const dir = join(tmpRoot, name);
    const st = await stat(dir).catch(() => null);
    if (!name.startsWith('debootstrap-') || !st?.isDirectory() || Date.now() - st.mtimeMs < olderThanMs) continue;
    await unmountUnder(dir).catch(() => {});
    await rm(dir, { recursive: true, force: true }).catch(() => {});
  }
}

/** Lazily unmounts whatever is mounted below `dir` (proc, sys, dev/pts after a killed debootstrap), deepest first. */
async function unmountUnder(dir: string): Promise<void> {
  const text = await readFile('/proc/self/mountinfo', 'utf8').catch(() => '');
  const points = text.split('\n')
    .map((line) => line.split(' ')[4]?.replace(/\\040/g, ' '))
    .filter((p): p is string => p !== undefined && p.startsWith(`${dir}/`))
    .sort((a, b) => b.length - a.length);
  for (const p of points) {
    await runLines('umount', ['-l', p], { onLine: () => {}, timeoutMs: 30_000 });
  }
}
