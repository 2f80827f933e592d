import { isAbsolute } from 'node:path';
import type { DiskFormat } from '../../../protocol/base-ref.js';
import { lastLines, runTool } from './run-tool.js';

/**
 * Every disk image goes through checkDiskImage() right before QEMU is given it (VmExecutor.open):
 * `qemu-img info` reads only the image's header (it opens no backing file) and the image is
 * refused when it names another file: a backing file (QEMU would read it as the guest's disk:
 * a qcow2 whose backing file is ~/.ssh/id_ed25519 hands the key to the guest) or an external
 * data file, or when it is not the format its name says (raw and qcow2 only). QEMU then gets
 * the format explicitly (format=…), so it never probes one either. The paths checked are
 * absolute, so no "nbd:"/"json:" protocol prefix can be read into them, and they are the
 * volunteer's bases directory or the worker's own download cache, which nothing from the
 * build can write to, so the file checked is the file booted.
 */

const QEMU_IMG = 'qemu-img';
const INFO_TIMEOUT_MS = 30_000;

export interface DiskImageInfo {
  format: DiskFormat;
  virtualSize: number;
}

/** Throws a sentence naming `label` and what is wrong with the image. */
export async function checkDiskImage(path: string, expected: DiskFormat, label: string): Promise<DiskImageInfo> {
  if (!isAbsolute(path)) throw new Error(`disk image ${path} (${label}): not an absolute path`);
  const r = await runTool(QEMU_IMG, ['info', '--output=json', '-U', path], {
    allowFailure: true, timeoutMs: INFO_TIMEOUT_MS, installHint: 'apt-get install qemu-utils',
  });
  if (r.code !== 0) throw new Error(`disk image of ${label} is refused: qemu-img cannot read it (${lastLines(r.stderr, 2) || `exit code ${r.code ?? 'none, time limit'}`})`);
  let info: Record<string, unknown>;
  try {
    info = JSON.parse(r.stdout.toString()) as Record<string, unknown>;
  } catch {
    throw new Error(`disk image of ${label} is refused: qemu-img's description of it is not JSON`);
  }
  return judgeImageInfo(info, expected, label);
}

/** The rules, on qemu-img's JSON (exported for tests). */
export function judgeImageInfo(info: Record<string, unknown>, expected: DiskFormat, label: string): DiskImageInfo {
  const refuse = (why: string): never => { throw new Error(`disk image of ${label} is refused: ${why}`); };
  if (info === null || typeof info !== 'object' || Array.isArray(info)) refuse('qemu-img described no image');
  const backing = info['backing-filename'] ?? info['full-backing-filename'] ?? info['backing-filename-format'];
  if (backing !== undefined) refuse('it has a backing file (QEMU would read another file of the worker as the disk); flatten it with qemu-img convert');
  const specific = info['format-specific'] as { data?: Record<string, unknown> } | undefined;
  if (specific?.data && (specific.data['data-file'] !== undefined || specific.data['data-file-raw'] !== undefined)) {
    refuse('it has an external data file (QEMU would read another file of the worker as the disk); flatten it with qemu-img convert');
  }
  const format = info.format;
  if (format !== 'raw' && format !== 'qcow2') refuse(`it is ${typeof format === 'string' ? format : 'of no known format'}; only raw and qcow2 images are booted`);
  if (format !== expected) refuse(`it is ${format}, and its name says ${expected} (.qcow2 for qcow2; .img or .raw for raw)`);
  const virtualSize = Number(info['virtual-size']);
  if (!Number.isSafeInteger(virtualSize) || virtualSize <= 0) refuse('it has no valid size');
  return { format: expected, virtualSize };
}
