import type { EnvironmentSpec } from '../../../protocol/build-spec.js';
import { parseBaseRef, type BaseFile } from '../../../protocol/base-ref.js';

/**
 * The `environment.base` forms the container executor understands. The grammar is
 * protocol/base-ref.ts, shared with the master's builder-file check: a spec from the master is
 * parsed again here, so a base that names a path on the worker (rootfs:/etc/…, a file://
 * mirror, a podman transport such as docker-archive:) is refused before the host touches it.
 */

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
  | { kind: 'rootfs'; file: BaseFile }
  | { kind: 'image'; ref: string };

const SUPPORTED = 'it supports busybox, debootstrap:SUITE[@MIRROR], rootfs:NAME.tar, rootfs:URL#sha256=HEX and image:REF';

/**
 * `busybox`, `debootstrap:bookworm`, `debootstrap:jammy@http://mirror/ubuntu`,
 * `rootfs:root.tar` (in the bases directory), `rootfs:https://host/root.tar#sha256=HEX`,
 * `image:docker.io/library/debian:12`. Throws a sentence naming the problem otherwise.
 * `debianMirror` is the volunteer's own setting (it may be any URL the volunteer chose).
 */
export function parseBase(base: string, debianMirror = DEFAULT_DEBIAN_MIRROR): BaseSpec {
  const ref = parseBaseRef(base);
  switch (ref.kind) {
    case 'busybox':
    case 'image':
    case 'rootfs':
      return ref;
    case 'debootstrap': {
      const mirror = ref.mirror ?? (UBUNTU_SUITES.has(ref.suite) ? UBUNTU_MIRROR : debianMirror.replace(/\/+$/, ''));
      return { kind: 'debootstrap', suite: ref.suite, mirror, variant: DEBOOTSTRAP_VARIANT };
    }
    case 'vm-busybox':
    case 'vm-disk':
      throw new Error(`base "${base}" is not supported by the container executor yet (${SUPPORTED})`);
  }
}

/** "debootstrap:bookworm + 2 setup steps", for progress lines. */
export function describeEnvironment(environment: EnvironmentSpec): string {
  const n = environment.setup.length;
  return n === 0 ? environment.base : `${environment.base} + ${n} setup step${n === 1 ? '' : 's'}`;
}
