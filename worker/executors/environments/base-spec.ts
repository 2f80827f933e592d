import type { EnvironmentSpec } from '../../../protocol/build-spec.js';

/** The `environment.base` forms the container executor understands, parsed. */

export const DEFAULT_DEBIAN_MIRROR = 'http://deb.debian.org/debian';
export const UBUNTU_MIRROR = 'http://archive.ubuntu.com/ubuntu';
/** Ubuntu codenames debootstrap knows; these default to the Ubuntu mirror. */
export const UBUNTU_SUITES: ReadonlySet<string> = new Set([
  'trusty', 'xenial', 'bionic', 'focal', 'jammy', 'kinetic', 'lunar', 'mantic', 'noble', 'oracular', 'plucky', 'questing',
]);
export const DEBOOTSTRAP_VARIANT = 'minbase';

export type BaseSpec =
  | { kind: 'busybox' }
  | { kind: 'debootstrap'; suite: string; mirror: string; variant: string }
  | { kind: 'rootfs'; path: string }
  | { kind: 'image'; ref: string };

const SUITE = /^[a-z][a-z0-9.-]{0,39}$/;
const SUPPORTED = 'it supports busybox, debootstrap:SUITE[@MIRROR], rootfs:PATH.tar and image:REF';

/**
 * `busybox`, `debootstrap:bookworm`, `debootstrap:jammy@http://mirror/ubuntu`,
 * `rootfs:/path/root.tar`, `image:docker.io/library/debian:12`. Throws a sentence naming the
 * problem otherwise.
 */
export function parseBase(base: string, debianMirror = DEFAULT_DEBIAN_MIRROR): BaseSpec {
  if (base === 'busybox') return { kind: 'busybox' };
  if (base.startsWith('debootstrap:')) {
    const rest = base.slice('debootstrap:'.length);
    const at = rest.indexOf('@');
    const suite = at < 0 ? rest : rest.slice(0, at);
    if (!SUITE.test(suite)) throw new Error(`base "${base}": "${suite}" is not a Debian or Ubuntu suite name`);
    let mirror = at < 0 ? (UBUNTU_SUITES.has(suite) ? UBUNTU_MIRROR : debianMirror) : rest.slice(at + 1);
    mirror = mirror.replace(/\/+$/, '');
    if (!/^(https?|file):\/\/[^\s'"]+$/.test(mirror)) {
      throw new Error(`base "${base}": mirror "${mirror}" must be an http://, https:// or file:// URL`);
    }
    return { kind: 'debootstrap', suite, mirror, variant: DEBOOTSTRAP_VARIANT };
  }
  if (base.startsWith('rootfs:')) {
    const path = base.slice('rootfs:'.length).trim();
    if (!path) throw new Error(`base "${base}" does not name a tarball`);
    return { kind: 'rootfs', path };
  }
  if (base.startsWith('image:')) {
    const ref = base.slice('image:'.length).trim();
    if (!ref || ref.startsWith('-') || /\s/.test(ref)) throw new Error(`base "${base}" does not name an image`);
    return { kind: 'image', ref };
  }
  throw new Error(`base "${base}" is not supported by the container executor yet (${SUPPORTED})`);
}

/** "debootstrap:bookworm + 2 setup steps", for progress lines. */
export function describeEnvironment(environment: EnvironmentSpec): string {
  const n = environment.setup.length;
  return n === 0 ? environment.base : `${environment.base} + ${n} setup step${n === 1 ? '' : 's'}`;
}
