import { constants } from 'node:fs';
import { lstat, open, readdir, readlink } from 'node:fs/promises';
import { join } from 'node:path';

/**
 * A tar stream of a directory, as `tarfile.open(mode="w").add(path, "")` writes it for
 * upload_directory: the directory itself first ("./"), then its entries sorted by name,
 * recursively; symlinks are stored as symlinks (never followed); sockets, fifos and devices
 * are left out. ustar headers, with a pax header for names or sizes that do not fit.
 * With the container executor this runs while the builder's container is frozen
 * (transfer-commands.ts), and files are opened with O_NOFOLLOW: a name lstat saw as a file
 * cannot turn into a symlink to somewhere else.
 */

const BLOCK = 512;

export async function* tarDirectory(root: string): AsyncGenerator<Buffer> {
  yield* entry(root, './');
  yield Buffer.alloc(BLOCK * 2);
}

async function* entry(path: string, name: string): AsyncGenerator<Buffer> {
  const st = await lstat(path);
  const base = { mode: st.mode & 0o7777, uid: st.uid, gid: st.gid, mtime: Math.floor(st.mtimeMs / 1000) };
  if (st.isSymbolicLink()) {
    yield* header({ ...base, name, type: '2', size: 0, linkname: await readlink(path) });
  } else if (st.isDirectory()) {
    yield* header({ ...base, name: name.endsWith('/') ? name : `${name}/`, type: '5', size: 0, linkname: '' });
    const prefix = name === './' ? '' : `${name.replace(/\/$/, '')}/`;
    for (const child of (await readdir(path)).sort()) yield* entry(join(path, child), prefix + child);
  } else if (st.isFile()) {
    yield* header({ ...base, name, type: '0', size: st.size, linkname: '' });
    let sent = 0;
    const file = await open(path, constants.O_RDONLY | constants.O_NOFOLLOW | constants.O_NONBLOCK);
    for await (const chunk of file.createReadStream({ end: st.size > 0 ? st.size - 1 : 0 })) {
      const b = (chunk as Buffer).subarray(0, st.size - sent);
      sent += b.length;
      if (b.length) yield b;
      if (sent >= st.size) break;
    }
    // The file shrank while we read it: the header promised st.size bytes.
    if (sent < st.size) yield Buffer.alloc(st.size - sent);
    if (st.size % BLOCK) yield Buffer.alloc(BLOCK - (st.size % BLOCK));
  }
}

interface Header { name: string; type: string; size: number; linkname: string; mode: number; uid: number; gid: number; mtime: number }

function* header(h: Header): Generator<Buffer> {
  const pax: string[] = [];
  const name = Buffer.from(h.name);
  const link = Buffer.from(h.linkname);
  if (name.length > 100) pax.push(record('path', h.name));
  if (link.length > 100) pax.push(record('linkpath', h.linkname));
  if (h.size >= 8 ** 11) pax.push(record('size', String(h.size)));
  if (pax.length) {
    const body = Buffer.from(pax.join(''));
    yield block({ name: '././@PaxHeader', type: 'x', size: body.length, linkname: '', mode: 0o644, uid: 0, gid: 0, mtime: h.mtime });
    yield Buffer.concat([body, Buffer.alloc((BLOCK - (body.length % BLOCK)) % BLOCK)]);
  }
  yield block(h);
}

/** One pax record: "<length> <key>=<value>\n", the length counting itself. */
function record(key: string, value: string): string {
  const rest = ` ${key}=${value}\n`;
  let n = Buffer.byteLength(rest) + 1;
  while (String(n).length + Buffer.byteLength(rest) !== n) n++;
  return `${n}${rest}`;
}

function block(h: Header): Buffer {
  const b = Buffer.alloc(BLOCK);
  const octal = (v: number, width: number): string => (v < 8 ** (width - 1) ? v.toString(8).padStart(width - 1, '0') : '0'.repeat(width - 1));
  b.write(Buffer.from(h.name).subarray(0, 100).toString('latin1'), 0, 100, 'latin1');
  b.write(octal(h.mode, 8), 100, 'ascii');
  b.write(octal(h.uid, 8), 108, 'ascii');
  b.write(octal(h.gid, 8), 116, 'ascii');
  b.write(octal(h.size, 12), 124, 'ascii');
  b.write(octal(h.mtime, 12), 136, 'ascii');
  b.write(h.type, 156, 'ascii');
  b.write(Buffer.from(h.linkname).subarray(0, 100).toString('latin1'), 157, 100, 'latin1');
  b.write('ustar\u000000', 257, 'latin1');
  b.fill(0x20, 148, 156);
  let sum = 0;
  for (const c of b) sum += c;
  b.write(`${sum.toString(8).padStart(6, '0')}\u0000 `, 148, 'latin1');
  return b;
}
