import { createHash, randomBytes } from 'node:crypto';
import { lookup } from 'node:dns';
import { createWriteStream, type WriteStream } from 'node:fs';
import { lstat, mkdir, realpath, rename, rm, stat } from 'node:fs/promises';
import { get as httpGet, type IncomingMessage } from 'node:http';
import { get as httpsGet } from 'node:https';
import { BlockList, isIP, type LookupFunction } from 'node:net';
import { join, sep } from 'node:path';
import type { BaseFile } from '../../protocol/base-ref.js';
import { formatBytes } from './step-support.js';

/**
 * Finds the file a `rootfs:` or `vm:` base is made from. The base comes from the master, so it
 * is never a host path (protocol/base-ref.ts): either a plain file name in the directory the
 * volunteer chose (`--bases-dir`, default DATA/bases), resolved without following a symlink
 * out of it, or a URL with the sha256 the builder file gives. Downloads run here on the host,
 * in this process (no child, no proxy or credential from the environment, no cookies), only
 * to http(s) hosts that are not loopback, link-local or multicast, capped in size and time,
 * into a private partial file that is hashed while written and renamed to its sha256 only
 * when it matches; nothing else reads it before that. So the master can make the worker fetch
 * bytes, but only bytes whose hash it named, and never a file of the volunteer's.
 */

export const DEFAULT_MAX_BASE_BYTES = 16 * 1024 ** 3;
const DEFAULT_DOWNLOAD_TIMEOUT_MS = 60 * 60_000;
const IDLE_TIMEOUT_MS = 60_000;
const MAX_REDIRECTS = 5;

export interface BaseFilesOptions {
  /** The volunteer's directory of base files (`rootfs:NAME`, `vm:NAME`); undefined: names are refused. */
  basesDir?: string;
  /** Where downloaded bases are kept, by sha256. */
  downloadDir: string;
  /** Largest download (default 16 GiB). */
  maxBytes?: number;
  timeoutMs?: number;
  /** Tests only: allow loopback hosts (a test server on 127.0.0.1). */
  allowLoopback?: boolean;
}

const blocked = new BlockList();
blocked.addSubnet('0.0.0.0', 8, 'ipv4');
blocked.addSubnet('169.254.0.0', 16, 'ipv4');
blocked.addSubnet('224.0.0.0', 3, 'ipv4');
blocked.addAddress('::', 'ipv6');
blocked.addSubnet('fe80::', 10, 'ipv6');
blocked.addSubnet('ff00::', 8, 'ipv6');
const loopback = new BlockList();
loopback.addSubnet('127.0.0.0', 8, 'ipv4');
loopback.addAddress('::1', 'ipv6');

function refusedAddress(address: string, allowLoopback: boolean): boolean {
  const family = isIP(address) === 6 ? 'ipv6' : 'ipv4';
  let a = address;
  let f: 'ipv4' | 'ipv6' = family;
  const mapped = /^::ffff:(\d+\.\d+\.\d+\.\d+)$/i.exec(address);
  if (mapped) { a = mapped[1]!; f = 'ipv4'; }
  return blocked.check(a, f) || (!allowLoopback && loopback.check(a, f));
}

export class BaseFiles {
  private readonly downloads = new Map<string, Promise<string>>();

  constructor(private readonly o: BaseFilesOptions) {}

  get basesDir(): string | undefined {
    return this.o.basesDir;
  }

  /** The absolute path of a regular file holding the base; throws a sentence naming the problem. */
  async locate(file: BaseFile, base: string, progress: (line: string) => void): Promise<string> {
    return file.from === 'bases-dir' ? this.inBasesDir(file.name, base) : this.download(file.url, file.sha256, base, progress);
  }

  private async inBasesDir(name: string, base: string): Promise<string> {
    const dir = this.o.basesDir;
    if (!dir) throw new Error(`base "${base}" names a file in the volunteer's bases directory, and this worker has none (crowdbake worker --bases-dir DIR)`);
    // parseBaseRef allows only plain names; checked again since this is the host's side.
    if (name.includes('/') || name === '.' || name === '..' || name.includes('\0')) throw new Error(`base "${base}": "${name}" is not a plain file name`);
    const realDir = await realpath(dir).catch(() => null);
    if (!realDir) throw new Error(`base "${base}": the bases directory ${dir} does not exist (the volunteer puts base files there)`);
    const path = join(realDir, name);
    const st = await lstat(path).catch(() => null);
    if (!st) throw new Error(`base "${base}": there is no ${name} in the bases directory ${dir}`);
    let real = path;
    if (st.isSymbolicLink()) {
      real = await realpath(path).catch(() => '');
      if (!real.startsWith(realDir + sep)) throw new Error(`base "${base}": ${name} in the bases directory is a symbolic link that leads out of it (or nowhere); put the file itself there`);
    }
    const target = await stat(real);
    if (!target.isFile()) throw new Error(`base "${base}": ${name} in the bases directory is not a regular file`);
    return real;
  }

  private download(url: string, sha256: string, base: string, progress: (line: string) => void): Promise<string> {
    let p = this.downloads.get(sha256);
    if (!p) {
      p = this.fetchOnce(url, sha256, base, progress);
      this.downloads.set(sha256, p);
      p.catch(() => this.downloads.delete(sha256));
    }
    return p;
  }

  private async fetchOnce(url: string, sha256: string, base: string, progress: (line: string) => void): Promise<string> {
    const final = join(this.o.downloadDir, `${sha256}.file`);
    if ((await stat(final).catch(() => null))?.isFile()) return final;
    await mkdir(this.o.downloadDir, { recursive: true, mode: 0o700 });
    const partial = join(this.o.downloadDir, `.partial-${sha256.slice(0, 16)}-${randomBytes(6).toString('hex')}`);
    const max = this.o.maxBytes ?? DEFAULT_MAX_BASE_BYTES;
    progress(`downloading ${url} (base "${base}")`);
    const started = Date.now();
    try {
      const got = await this.fetchTo(url, partial, max, this.o.timeoutMs ?? DEFAULT_DOWNLOAD_TIMEOUT_MS);
      if (got.sha256 !== sha256) {
        throw new Error(`base "${base}": the download's sha256 is ${got.sha256}, not the ${sha256} the builder file names; it is not used`);
      }
      await rename(partial, final);
      progress(`downloaded ${formatBytes(got.bytes)} in ${((Date.now() - started) / 1000).toFixed(1)} s, sha256 matches`);
      return final;
    } catch (e) {
      await rm(partial, { force: true });
      const msg = (e as Error).message;
      throw new Error(msg.startsWith(`base "${base}"`) ? msg : `base "${base}": downloading ${url} failed: ${msg}`);
    }
  }

  private fetchTo(url: string, file: string, max: number, timeoutMs: number): Promise<{ sha256: string; bytes: number }> {
    const allowLoopback = this.o.allowLoopback === true;
    const checkedLookup: LookupFunction = (hostname, options, cb) => {
      lookup(hostname, { all: true, family: options.family ?? 0 }, (err, addresses) => {
        if (err) return cb(err, '', 0);
        const bad = addresses.find((a) => refusedAddress(a.address, allowLoopback));
        if (bad) return cb(new Error(`${hostname} is ${bad.address}, a loopback, link-local or multicast address the worker does not download from`), '', 0);
        if (options.all) return (cb as unknown as (e: null, a: typeof addresses) => void)(null, addresses);
        return cb(null, addresses[0]!.address, addresses[0]!.family);
      });
    };
    return new Promise((resolve, reject) => {
      const deadline = setTimeout(() => finish(new Error(`no complete answer within ${Math.round(timeoutMs / 1000)} s`)), timeoutMs);
      let done = false;
      let current: IncomingMessage | undefined;
      let out: WriteStream | undefined;
      const finish = (e: Error | null, v?: { sha256: string; bytes: number }): void => {
        if (done) return;
        done = true;
        clearTimeout(deadline);
        current?.destroy();
        if (e) out?.destroy();
        if (e) reject(e);
        else resolve(v!);
      };
      const go = (u: string, hops: number): void => {
        let parsed: URL;
        try { parsed = new URL(u); } catch { return finish(new Error(`"${u}" is not a URL`)); }
        if (parsed.protocol !== 'http:' && parsed.protocol !== 'https:') return finish(new Error(`a redirect to ${parsed.protocol} is not followed`));
        if (parsed.username || parsed.password) return finish(new Error('URLs with credentials are not followed'));
        const literal = parsed.hostname.replace(/^\[|\]$/g, '');
        if (isIP(literal) && refusedAddress(literal, allowLoopback)) {
          return finish(new Error(`${literal} is a loopback, link-local or multicast address the worker does not download from`));
        }
        const get = parsed.protocol === 'https:' ? httpsGet : httpGet;
        const req = get(parsed, { lookup: checkedLookup, headers: { 'user-agent': 'crowdbake-worker', accept: '*/*' }, timeout: IDLE_TIMEOUT_MS, agent: false }, (res) => {
          current = res;
          const status = res.statusCode ?? 0;
          if (status >= 300 && status < 400 && res.headers.location) {
            res.resume();
            if (hops >= MAX_REDIRECTS) return finish(new Error(`more than ${MAX_REDIRECTS} redirects`));
            return go(new URL(res.headers.location, parsed).href, hops + 1);
          }
          if (status !== 200) { res.resume(); return finish(new Error(`the server answered ${status}`)); }
          const declared = Number(res.headers['content-length']);
          if (Number.isFinite(declared) && declared > max) { res.resume(); return finish(new Error(`it is ${formatBytes(declared)}, over the cap of ${formatBytes(max)}`)); }
          const hash = createHash('sha256');
          let bytes = 0;
          out = createWriteStream(file, { flags: 'wx', mode: 0o600 });
          const o = out;
          o.on('error', (e) => finish(e));
          res.on('data', (c: Buffer) => {
            bytes += c.length;
            if (bytes > max) return finish(new Error(`it is over the cap of ${formatBytes(max)}`));
            hash.update(c);
            if (!o.write(c)) { res.pause(); o.once('drain', () => res.resume()); }
          });
          res.on('error', (e) => finish(e));
          res.on('aborted', () => finish(new Error('the connection was cut')));
          res.on('end', () => {
            if (done) return;
            o.end(() => finish(null, { sha256: hash.digest('hex'), bytes }));
          });
        });
        req.on('timeout', () => req.destroy(new Error(`no data for ${IDLE_TIMEOUT_MS / 1000} s`)));
        req.on('error', (e) => finish(e));
      };
      go(url, 0);
    });
  }
}
