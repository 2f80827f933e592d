import * as z from 'zod';

/**
 * `environment.base`, parsed: the one grammar the master (builder files) and the worker (the
 * spec it is sent) both check. A base comes from the master, so it never names a path on the
 * worker: it is a registry reference, a debootstrap suite with an http(s) mirror, busybox, a
 * file the worker downloads and checks against a sha256 given here, or a plain file name in a
 * directory the volunteer chose (`crowdbake worker --bases-dir DIR`, default DATA/bases).
 * Pure: no I/O, so both sides can use it.
 *
 *   busybox | vm:busybox
 *   debootstrap:SUITE[@http(s)://MIRROR]
 *   image:[HOST[:PORT]/]PATH[:TAG][@sha256:HEX]      (a registry reference; no transport)
 *   rootfs:NAME.tar   vm:NAME.qcow2 | vm:NAME.img | vm:NAME.raw      (in the bases directory)
 *   rootfs:https://HOST/PATH#sha256=HEX   vm:https://HOST/PATH.qcow2#sha256=HEX   (downloaded)
 */

/** A file a base is made from: in the volunteer's bases directory, or downloaded and checked. */
export type BaseFile =
  | { from: 'bases-dir'; name: string }
  | { from: 'url'; url: string; sha256: string };

export type DiskFormat = 'qcow2' | 'raw';

export type BaseRef =
  | { kind: 'busybox' }
  | { kind: 'debootstrap'; suite: string; mirror: string | null }
  /** `ref` is fully qualified (docker.io/library/debian:12), so no short-name lookup can pick a local image. */
  | { kind: 'image'; ref: string }
  | { kind: 'rootfs'; file: BaseFile }
  | { kind: 'vm-busybox' }
  | { kind: 'vm-disk'; file: BaseFile; format: DiskFormat };

export class BaseRefError extends Error {}

const SUITE = /^[a-z][a-z0-9.-]{0,39}$/;
/** A plain file name: no directory part, not "." or "..", no leading "-". */
const FILE_NAME = /^[A-Za-z0-9_][A-Za-z0-9._+-]{0,199}$/;
const SHA256 = /^[0-9a-f]{64}$/;
/** http(s) URL without credentials, spaces or quotes; the host is checked again by the downloader. */
const HTTP_URL = /^https?:\/\/[^\s/?#@'"\\]+(?:[/?][^\s#'"\\]*)?$/;
const MAX_URL = 2000;

// The docker reference grammar (github.com/distribution/reference), with sha256 digests only.
const DOMAIN_PART = '(?:[a-zA-Z0-9]|[a-zA-Z0-9][a-zA-Z0-9-]*[a-zA-Z0-9])';
const DOMAIN = `${DOMAIN_PART}(?:\\.${DOMAIN_PART})*(?::[0-9]{1,5})?`;
const PATH_PART = '[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*';
const REFERENCE = new RegExp(`^(?:(${DOMAIN})/)?(${PATH_PART}(?:/${PATH_PART})*)(?::([\\w][\\w.-]{0,127}))?(?:@(sha256:[0-9a-f]{64}))?$`);
/** containers/image transports: each reads something on the worker (files, local storage, a daemon). */
const TRANSPORTS = ['containers-storage', 'docker-archive', 'docker-daemon', 'oci-archive', 'oci', 'dir', 'docker', 'ostree', 'sif', 'tarball'];

export const BASE_FORMS = 'busybox, debootstrap:SUITE[@http(s)://MIRROR], image:REGISTRY-REFERENCE, '
  + 'rootfs:NAME.tar or rootfs:https://…#sha256=HEX, vm:busybox, vm:NAME.qcow2|.img or vm:https://….qcow2#sha256=HEX';

function fail(base: string, why: string): never {
  throw new BaseRefError(`base "${base}"${why.startsWith(':') ? '' : ' '}${why}`);
}

/** Throws a BaseRefError naming the base and what to write instead. */
export function parseBaseRef(base: string): BaseRef {
  if (base === 'busybox') return { kind: 'busybox' };
  if (base === 'vm:busybox') return { kind: 'vm-busybox' };
  const colon = base.indexOf(':');
  const scheme = colon < 0 ? base : base.slice(0, colon);
  const rest = colon < 0 ? '' : base.slice(colon + 1);
  switch (scheme) {
    case 'debootstrap': return debootstrap(base, rest);
    case 'image': return { kind: 'image', ref: imageRef(base, rest) };
    case 'rootfs': return { kind: 'rootfs', file: baseFile(base, 'rootfs', rest, /\.(tar|tar\.gz|tgz|tar\.xz|tar\.zst)$/i, 'NAME.tar') };
    case 'vm': {
      const file = baseFile(base, 'vm', rest, /\.(qcow2|img|raw)$/i, 'NAME.qcow2');
      const name = file.from === 'url' ? new URL(file.url).pathname : file.name;
      return { kind: 'vm-disk', file, format: /\.qcow2$/i.test(name) ? 'qcow2' : 'raw' };
    }
    default:
      return fail(base, `is not a base (one of ${BASE_FORMS})`);
  }
}

/** null when `base` parses, else the sentence parseBaseRef would throw. */
export function baseProblem(base: string): string | null {
  try {
    parseBaseRef(base);
    return null;
  } catch (e) {
    return (e as Error).message;
  }
}

/** `environment.base` in a builder file: refused with the parser's sentence (zod adds the field's path). */
export const BaseSchema = z.string().min(1).superRefine((base, ctx) => {
  const problem = baseProblem(base);
  if (problem) ctx.addIssue({ code: 'custom', message: problem });
});

function debootstrap(base: string, rest: string): BaseRef {
  const at = rest.indexOf('@');
  const suite = at < 0 ? rest : rest.slice(0, at);
  if (!SUITE.test(suite)) fail(base, `: "${suite}" is not a Debian or Ubuntu suite name`);
  if (at < 0) return { kind: 'debootstrap', suite, mirror: null };
  const mirror = rest.slice(at + 1).replace(/\/+$/, '');
  if (/^file:/i.test(mirror)) {
    fail(base, `: mirror "${mirror}" is a path on the worker; a builder file can name only http:// or https:// mirrors `
      + '(the worker\'s own default mirror is set by the volunteer)');
  }
  if (mirror.length > MAX_URL || !HTTP_URL.test(mirror)) fail(base, `: mirror "${mirror}" must be an http:// or https:// URL`);
  return { kind: 'debootstrap', suite, mirror };
}

function imageRef(base: string, ref: string): string {
  if (!ref) fail(base, 'does not name an image');
  const transport = /^([a-z-]+):/.exec(ref)?.[1];
  if (transport && TRANSPORTS.includes(transport) && !/^[a-z-]+:[0-9]/.test(ref)) {
    fail(base, `: "${transport}:" is a podman transport that reads files or images on the worker; image: takes a registry reference `
      + '(e.g. image:docker.io/library/debian:12); for a tarball use rootfs:NAME.tar in the bases directory or rootfs:https://…#sha256=HEX');
  }
  if (ref.startsWith('/') || ref.startsWith('.')) {
    fail(base, 'is a path on the worker; image: takes a registry reference (e.g. image:docker.io/library/debian:12)');
  }
  if (ref.length > 512) fail(base, 'is too long for an image reference');
  const m = REFERENCE.exec(ref);
  if (!m) fail(base, 'is not a registry reference ([HOST[:PORT]/]PATH[:TAG][@sha256:HEX], lower-case path)');
  let [, domain, path] = m;
  const tail = ref.slice((domain ? domain.length + 1 : 0) + path!.length);
  // As docker does: the first part is a registry host only if it has a "." or ":" or is localhost.
  if (domain && !/[.:]/.test(domain) && domain !== 'localhost') {
    path = `${domain}/${path!}`;
    domain = undefined;
  }
  if (domain === 'localhost') {
    fail(base, ': localhost/ names images stored on the worker, which a builder may not use; '
      + 'push the image to a registry, or use rootfs:NAME.tar from the volunteer\'s bases directory');
  }
  if (domain && domain !== domain.toLowerCase()) fail(base, ': the registry host must be lower case');
  domain ??= 'docker.io';
  if (domain === 'docker.io' && !path!.includes('/')) path = `library/${path!}`;
  const full = `${domain}/${path!}${tail}`;
  if (full.length > 255 + 140) fail(base, 'is too long for an image reference');
  return full;
}

function baseFile(base: string, kind: 'rootfs' | 'vm', rest: string, ext: RegExp, example: string): BaseFile {
  const instead = `use ${kind}:${example} for a file in the volunteer's bases directory (crowdbake worker --bases-dir), `
    + `or ${kind}:https://…#sha256=HEX for a file the worker downloads and checks`;
  if (!rest) fail(base, `does not name a file; ${instead}`);
  if (/^https?:\/\//i.test(rest)) {
    const hash = rest.lastIndexOf('#');
    const url = hash < 0 ? rest : rest.slice(0, hash);
    const frag = hash < 0 ? '' : rest.slice(hash + 1);
    const sha = /^sha256=(.*)$/.exec(frag)?.[1];
    if (sha === undefined) fail(base, ': a downloaded base needs its content hash: add #sha256=HEX (64 lower-case hex digits) after the URL');
    if (!SHA256.test(sha)) fail(base, `: "${sha}" is not a sha256 (64 lower-case hex digits)`);
    if (url.length > MAX_URL || !HTTP_URL.test(url)) fail(base, `: "${url}" is not an http(s) URL without credentials`);
    let parsed: URL;
    try { parsed = new URL(url); } catch { return fail(base, `: "${url}" is not a URL`); }
    if (!ext.test(parsed.pathname)) fail(base, `: the URL's path must end in ${exts(ext)}`);
    return { from: 'url', url: parsed.href, sha256: sha };
  }
  if (rest.includes('/') || rest.includes('\\') || rest.startsWith('~') || /^[a-z]+:/i.test(rest) || rest === '.' || rest === '..') {
    fail(base, `names a path on the worker, which a builder may not do; ${instead}`);
  }
  if (!FILE_NAME.test(rest)) fail(base, `: "${rest}" is not a plain file name (letters, digits, ".", "_", "+", "-")`);
  if (!ext.test(rest)) fail(base, `: "${rest}" must end in ${exts(ext)}`);
  return { from: 'bases-dir', name: rest };
}

function exts(ext: RegExp): string {
  return ext.source.replace(/^\\\.\(|\)\$$/g, '').split('|').map((e) => `.${e.replace(/\\/g, '')}`).join(', ');
}
