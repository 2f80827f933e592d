import { createHash } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';

/** Written next to the worker bundle (scripts/build-worker-bundle.mjs): what it was built from. */
export const BUNDLE_INPUTS = 'inputs.json';

export interface BundleInputs {
  /** The files of dist/ the bundle holds, relative to dist/, in a fixed order. */
  files: string[];
  /** inputsDigest() of them when the bundle was built. */
  sha256: string;
}

/**
 * One digest of the named files' contents (and names): the bundle is current exactly while the
 * tree it was built from is unchanged — whatever the files' times, which a copy (packaging) may
 * change and a `tsc` run that changed nothing would not. Null when a file is missing.
 */
export function inputsDigest(distDir: string, files: readonly string[]): string | null {
  const h = createHash('sha256');
  for (const f of files) {
    let data: Buffer;
    try { data = readFileSync(join(distDir, f)); } catch { return null; }
    h.update(`${f}\0${data.length}\0`).update(data);
  }
  return h.digest('hex');
}
