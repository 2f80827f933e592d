import { stat } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import type { BaseFile } from '../../../protocol/base-ref.js';
import { BaseFiles } from '../base-download.js';
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
 *
 * What the master names is never a host path (protocol/base-ref.ts): a rootfs tarball is a
 * file of the volunteer's bases directory or a download checked against its sha256
 * (base-download.ts); an image is a fully qualified registry reference, pulled with the
 * docker:// transport so that no podman transport can read a file or local storage.
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
  /** The volunteer's directory for `rootfs:NAME` (default: none, such bases are refused). */
  basesDir?: string;
  /** Downloaded `rootfs:URL#sha256=…` tarballs, by sha256 (default: next to tmpRoot, in downloads/). */
  downloadDir?: string;
}

export class BaseImages {
  /** rootfs tarball (path:size:mtime) → its sha256, so a tarball is hashed once. */
  private readonly rootfsShas = new Map<string, Promise<string>>();

  private readonly files: BaseFiles;

  constructor(private readonly o: BaseImageOptions) {
    this.files = new BaseFiles({ basesDir: o.basesDir, downloadDir: o.downloadDir ?? join(dirname(o.tmpRoot), 'downloads') });
  }

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
        return this.rootfs(spec.file, progress);
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
      // docker://: a registry, whatever the reference looks like (never a transport reading host files).
      await podman(['pull', `docker://${ref}`], { onStderrLine: progress, timeoutMs: 30 * 60_000 });
    }
    const { stdout } = await podman(['image', 'inspect', '--format', '{{.Id}}', ref], { timeoutMs: 30_000 });
    return { identity: `image ${ref} ${stdout.trim()}`, ref, cached: false, ensure: async () => 'reused' };
  }

  /** `rootfs:NAME.tar` / `rootfs:URL#sha256=…` → localhost/crowdbake-rootfs:<sha256 prefix>, imported once. */
  private async rootfs(source: BaseFile, progress: Progress): Promise<BaseImage> {
    const label = source.from === 'url' ? `rootfs:${source.url}` : `rootfs:${source.name}`;
    const file = await this.files.locate(source, label, progress);
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
