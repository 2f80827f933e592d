/**
 * A writer for the "newc" cpio format the Linux kernel unpacks as its initramfs. Written here
 * rather than with cpio(1) so the archive can hold /dev/console without root, and so the same
 * inputs always give the same bytes (owner 0, fixed mtime, entries in the order given).
 */

export type CpioEntry =
  | { kind: 'dir'; path: string; mode?: number }
  | { kind: 'file'; path: string; data: Buffer; mode?: number }
  | { kind: 'symlink'; path: string; target: string }
  | { kind: 'chardev'; path: string; major: number; minor: number; mode?: number };

const S_IFDIR = 0o040000;
const S_IFREG = 0o100000;
const S_IFLNK = 0o120000;
const S_IFCHR = 0o020000;

export function cpioNewc(entries: CpioEntry[]): Buffer {
  const parts: Buffer[] = [];
  let size = 0;
  let ino = 1;
  const add = (b: Buffer): void => {
    parts.push(b);
    size += b.length;
  };
  const pad = (): void => {
    if (size % 4 !== 0) add(Buffer.alloc(4 - (size % 4)));
  };
  const entry = (path: string, mode: number, data: Buffer, rdev: [number, number] = [0, 0]): void => {
    const name = Buffer.from(`${path.replace(/^\/+/, '')}\0`);
    const fields = [ino++, mode, 0, 0, 1, 0, data.length, 0, 0, rdev[0], rdev[1], name.length, 0];
    add(Buffer.from(`070701${fields.map((f) => f.toString(16).padStart(8, '0')).join('')}`, 'ascii'));
    add(name);
    pad();
    add(data);
    pad();
  };
  for (const e of entries) {
    switch (e.kind) {
      case 'dir': entry(e.path, S_IFDIR | (e.mode ?? 0o755), Buffer.alloc(0)); break;
      case 'file': entry(e.path, S_IFREG | (e.mode ?? 0o644), e.data); break;
      case 'symlink': entry(e.path, S_IFLNK | 0o777, Buffer.from(e.target)); break;
      case 'chardev': entry(e.path, S_IFCHR | (e.mode ?? 0o600), Buffer.alloc(0), [e.major, e.minor]); break;
    }
  }
  entry('TRAILER!!!', 0, Buffer.alloc(0));
  return Buffer.concat(parts, size);
}
