import { stat } from 'node:fs/promises';
import { resolve } from 'node:path';
import { busyboxImage, sha256File } from '../busybox-image.js';
import { imageExists, podman } from '../podman.js';
import type { BaseSpec } from './base-spec.js';
import { debootstrapImage } from './debootstrap.js';
import { ENV_LABEL, ENV_REPO, KEY_LABEL, layerKeys } from './keys.js';
import { sharedBuild, type BuildOutcome, type Progress } from './shared-build.js';

/**
 * The image an environment's setup layers stack on, and its identity for the layer keys:
 * busybox → the busybox binary's sha256; debootstrap → suite, mirror, variant (and the
 * host's architecture); rootfs → the tarball's sha256; image → the reference and its image id
 * (pulled first when missing, so a re-pulled tag gets new layers).
 */

export const ROOTFS_REPO = 'localhost/crowdbake-rootfs';

export interface BaseImage {
  identity: string;
  ref: string;
  /** Made by the environment cache and evictable (debootstrap, rootfs); busybox and image: bases are not. */
  cached: boolean;
  /** Makes sure `ref` exists (building or importing it) and says whether it had to. */
  ensure: (progress: Progress) => Promise<BuildOutcome>;
}

export interface BaseImageOptions {
  lockDir: string;
  /** Where debootstrap's temporary roots go. */
  tmpRoot: string;
  debootstrapTimeoutMs: number;
}

export class BaseImages {
  /** rootfs tarball (path:size:mtime) → its sha256, so a tarball is hashed once. */
  private readonly rootfsShas = new Map<string, Promise<string>>();

  constructor(private readonly o: BaseImageOptions) {}

  async resolve(spec: BaseSpec, progress: Progress): Promise<BaseImage> {
    switch (spec.kind) {
      case 'busybox': {
        const image = await busyboxImage(progress);
        return {
          identity: `busybox sha256:${image.sha256}`, ref: image.ref, cached: false,
          ensure: async (p) => { await busyboxImage(p); return 'reused'; },
        };
      }
      case 'image':
        return this.image(spec.ref, progress);
      case 'rootfs':
        return this.rootfs(spec.path);
      case 'debootstrap': {
        const identity = `debootstrap ${spec.suite} ${spec.mirror} variant=${spec.variant} arch=${process.arch}`;
        const key = layerKeys(identity, [])[0]!;
        const ref = `${ENV_REPO}:debootstrap-${spec.suite}-${key.slice(0, 12)}`;
        const ensure = (p: Progress): Promise<BuildOutcome> => sharedBuild({
          tag: ref, lockDir: this.o.lockDir, what: `base debootstrap:${spec.suite}`, progress: p,
          build: (out) => debootstrapImage({
            ...spec, tag: ref, key, tmpRoot: this.o.tmpRoot, timeoutMs: this.o.debootstrapTimeoutMs,
          }, out),
        });
        return { identity, ref, cached: true, ensure };
      }
    }
  }

  private async image(ref: string, progress: Progress): Promise<BaseImage> {
    if (!await imageExists(ref)) {
      progress(`pulling ${ref}`);
      await podman(['pull', ref], { onStderrLine: progress, timeoutMs: 30 * 60_000 });
    }
    const { stdout } = await podman(['image', 'inspect', '--format', '{{.Id}}', ref], { timeoutMs: 30_000 });
    return { identity: `image ${ref} ${stdout.trim()}`, ref, cached: false, ensure: async () => 'reused' };
  }

  /** `rootfs:PATH.tar` → localhost/crowdbake-rootfs:<sha256 prefix>, imported once. */
  private async rootfs(path: string): Promise<BaseImage> {
    const file = resolve(path);
    const st = await stat(file).catch(() => null);
    if (!st?.isFile()) throw new Error(`rootfs tarball ${file} does not exist`);
    const memo = `${file}:${st.size}:${st.mtimeMs}`;
    let shaP = this.rootfsShas.get(memo);
    if (!shaP) {
      shaP = sha256File(file);
      this.rootfsShas.set(memo, shaP);
      shaP.catch(() => this.rootfsShas.delete(memo));
    }
    const sha = await shaP;
    const identity = `rootfs sha256:${sha}`;
    const ref = `${ROOTFS_REPO}:${sha.slice(0, 12)}`;
    const key = layerKeys(identity, [])[0]!;
    const ensure = (p: Progress): Promise<BuildOutcome> => sharedBuild({
      tag: ref, lockDir: this.o.lockDir, what: `base rootfs:${file}`, progress: p,
      build: async () => {
        p(`importing ${file} as ${ref}`);
        await podman(['import', '--change', `LABEL ${ENV_LABEL}=1`, '--change', `LABEL ${KEY_LABEL}=${key}`, file, ref],
          { timeoutMs: 30 * 60_000 });
      },
    });
    return { identity, ref, cached: true, ensure };
  }
}
