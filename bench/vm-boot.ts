import { rmSync } from 'node:fs';
import { join } from 'node:path';
import { defaultCacheDir } from '../worker/executors/detect.js';
import { measureBootTimes } from '../worker/executors/vm/boot-timing.js';
import type { BenchResult } from './types.js';

/**
 * Boot-to-first-command of the VM executor's guest, cold (a kernel boot per build) and
 * restored from a saved, booted guest (worker/executors/vm/vm-snapshot.ts) side by side in one
 * run, the snapshot's making, and the per-step overhead once booted.
 */
export async function run(): Promise<BenchResult[]> {
  const cacheDir = join(defaultCacheDir(), 'vm');
  const cold = await measureBootTimes({ cacheDir, runs: 5, snapshots: false });
  // The first build after the snapshots are removed makes one (boot, settle, save), then
  // restores from it; the other builds only restore.
  rmSync(join(cacheDir, 'snapshots'), { recursive: true, force: true });
  const snap = await measureBootTimes({ cacheDir, runs: 6, snapshots: true });
  const [making, ...restores] = snap.samplesMs;
  const restoreMedian = median(restores);
  const tcg = !/^KVM/.test(cold.accel);
  const samples = (xs: number[]) => `samples ${xs.map((x) => Math.round(x)).join(', ')}`;
  return [
    { name: `VM boot to first command, cold boot (${cold.accel}), median of ${cold.samplesMs.length}`, value: cold.medianMs, unit: 'ms', goal: tcg ? '<= 3000 (TCG)' : '<= 500 (KVM)', note: samples(cold.samplesMs) },
    { name: `VM boot to first command, restored from a snapshot (${snap.accel}), median of ${restores.length}`, value: restoreMedian, unit: 'ms', goal: tcg ? '<= 1000 (TCG)' : '<= 300 (KVM)', note: `${samples(restores)}; ${(cold.medianMs / restoreMedian).toFixed(1)}× less than the cold boot in the same run` },
    { name: `VM snapshot made by the first build (boot, save, restore to first command, ${snap.accel})`, value: making!, unit: 'ms', note: 'once per base, kernel, QEMU and machine options' },
    { name: `VM per-step overhead (a \`true\` step, ${cold.accel})`, value: cold.stepOverheadMs, unit: 'ms', note: `restored guest: ${snap.stepOverheadMs.toFixed(1)} ms` },
  ];
}

function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  const mid = Math.floor(s.length / 2);
  return s.length % 2 ? s[mid]! : (s[mid - 1]! + s[mid]!) / 2;
}
