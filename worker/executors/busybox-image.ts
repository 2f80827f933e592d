import { execFile, spawn } from 'node:child_process';
import { createHash } from 'node:crypto';
import { createReadStream } from 'node:fs';
import { chmod, copyFile, mkdir, mkdtemp, readFile, rm, symlink, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { imageExists, podman } from './podman.js';

/**
 * The image behind `base: busybox`: a rootfs holding only Debian's statically linked busybox
 * and its applets, imported into podman as localhost/crowdbake-busybox:<sha256 prefix>.
 * Built once per busybox binary; reused while the tag exists.
 */

export const BUSYBOX_PATH = '/bin/busybox';
export const BUSYBOX_REPO = 'localhost/crowdbake-busybox';
const NEEDS_STATIC = "base busybox needs Debian's busybox-static";

const execFileAsync = promisify(execFile);
/** Builds in flight, by busybox path. Settled builds are forgotten: the next call checks the tag again. */
const inFlight = new Map<string, Promise<BusyboxImage>>();

export interface BusyboxImage {
  ref: string;
  /** sha256 of the busybox binary: the image's identity. */
  sha256: string;
}

/**
 * Returns the image reference, building the image when its tag is missing. Concurrent callers
 * in this process share one build.
 */
export async function ensureBusyboxImage(progress: (line: string) => void = () => {}, busybox = BUSYBOX_PATH): Promise<string> {
  return (await busyboxImage(progress, busybox)).ref;
}

/** Like ensureBusyboxImage, also saying which busybox binary the image holds. */
export function busyboxImage(progress: (line: string) => void = () => {}, busybox = BUSYBOX_PATH): Promise<BusyboxImage> {
  let p = inFlight.get(busybox);
  if (!p) {
    p = build(busybox, progress).finally(() => inFlight.delete(busybox));
    inFlight.set(busybox, p);
  }
  return p;
}

async function build(busybox: string, progress: (line: string) => void): Promise<BusyboxImage> {
  let binary: Buffer;
  try {
    binary = await readFile(busybox);
  } catch {
    throw new Error(`${NEEDS_STATIC} (apt-get install busybox-static): ${busybox} is missing`);
  }
  if (!isStaticElf(binary)) {
    throw new Error(`${NEEDS_STATIC} (apt-get install busybox-static): ${busybox} is not statically linked`);
  }
  const sha256 = createHash('sha256').update(binary).digest('hex');
  const ref = `${BUSYBOX_REPO}:${sha256.slice(0, 12)}`;
  if (await imageExists(ref)) return { ref, sha256 };

  progress(`building image ${ref} from ${busybox}`);
  const dir = await mkdtemp(join(tmpdir(), 'crowdbake-busybox-'));
  try {
    const root = join(dir, 'root');
    await makeRootfs(root, busybox);
    await importRootfs(root, ref, { changes: ['ENV PATH=/bin', 'WORKDIR /work', 'LABEL crowdbake.env=1'], ownedByRoot: true });
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
  progress(`built image ${ref}`);
  return { ref, sha256 };
}

async function makeRootfs(root: string, busybox: string): Promise<void> {
  for (const d of ['bin', 'etc', 'work', 'usr', 'root']) await mkdir(join(root, d), { recursive: true });
  await mkdir(join(root, 'tmp'));
  await chmod(join(root, 'tmp'), 0o1777);
  await copyFile(busybox, join(root, 'bin/busybox'));
  await chmod(join(root, 'bin/busybox'), 0o755);

  const { stdout } = await execFileAsync(busybox, ['--list'], { maxBuffer: 1 << 20 });
  const applets = stdout.split('\n').map((s) => s.trim()).filter((s) => s && s !== 'busybox' && !s.includes('/'));
  if (applets.length === 0) throw new Error(`${busybox} --list printed no applets`);
  for (const applet of applets) await symlink('busybox', join(root, 'bin', applet));
  // Scripts say #!/usr/bin/env or /sbin/...: point the usual directories at /bin.
  await symlink('bin', join(root, 'sbin'));
  await symlink('../bin', join(root, 'usr/bin'));
  await symlink('../bin', join(root, 'usr/sbin'));

  await writeFile(join(root, 'etc/passwd'),
    'root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/nonexistent:/bin/false\n');
  await writeFile(join(root, 'etc/group'), 'root:x:0:\nnogroup:x:65534:\n');
}

export interface ImportOptions {
  /** Dockerfile instructions for `podman import --change`, e.g. "ENV PATH=/bin". */
  changes: readonly string[];
  /** tar --exclude patterns, e.g. "./var/cache/apt/archives/*.deb". */
  excludes?: readonly string[];
  /** Store every file as owned by root (a root made by an unprivileged worker). */
  ownedByRoot?: boolean;
  timeoutMs?: number;
}

/** tar -C root -c . | podman import --change … - REF */
export async function importRootfs(root: string, ref: string, o: ImportOptions): Promise<void> {
  const tarArgs = ['-C', root, '--numeric-owner', ...(o.ownedByRoot ? ['--owner=0', '--group=0'] : []),
    ...(o.excludes ?? []).map((x) => `--exclude=${x}`), '-c', '.'];
  const tar = spawn('tar', tarArgs,
    { stdio: ['ignore', 'pipe', 'pipe'] });
  const tarErr: Buffer[] = [];
  tar.stderr.on('data', (c: Buffer) => tarErr.push(c));
  const tarDone = new Promise<void>((resolve, reject) => {
    tar.on('error', (e) => reject(new Error(`tar could not start: ${e.message}`)));
    tar.on('close', (code) => code === 0 ? resolve()
      : reject(new Error(`tar -C ${root} -c . failed: ${Buffer.concat(tarErr).toString().trim() || `exit code ${code}`}`)));
  });
  tarDone.catch(() => {});
  await podman(['import', ...o.changes.flatMap((c) => ['--change', c]), '-', ref],
    { input: tar.stdout, timeoutMs: o.timeoutMs ?? 120_000 });
  await tarDone;
}

/** True for an ELF executable without a PT_INTERP header, i.e. one that needs no loader. */
export function isStaticElf(bin: Buffer): boolean {
  if (bin.length < 64 || bin.readUInt32BE(0) !== 0x7f454c46) return false;
  const is64 = bin[4] === 2;
  const le = bin[5] === 1;
  const u16 = (o: number): number => (le ? bin.readUInt16LE(o) : bin.readUInt16BE(o));
  const u32 = (o: number): number => (le ? bin.readUInt32LE(o) : bin.readUInt32BE(o));
  const phoff = is64 ? Number(le ? bin.readBigUInt64LE(0x20) : bin.readBigUInt64BE(0x20)) : u32(0x1c);
  const phentsize = u16(is64 ? 0x36 : 0x2a);
  const phnum = u16(is64 ? 0x38 : 0x2c);
  if (phnum === 0 || phoff + phentsize * phnum > bin.length) return false;
  for (let i = 0; i < phnum; i++) {
    if (u32(phoff + i * phentsize) === 3 /* PT_INTERP */) return false;
  }
  return true;
}

/** sha256 of a file, streamed (tarballs can be large). */
export async function sha256File(path: string): Promise<string> {
  const hash = createHash('sha256');
  for await (const chunk of createReadStream(path)) hash.update(chunk as Buffer);
  return hash.digest('hex');
}
