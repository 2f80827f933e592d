import { join } from 'node:path';
import { defaultCacheDir } from '../worker/executors/detect.js';
import { measureBootTimes } from '../worker/executors/vm/boot-timing.js';
import type { BenchResult } from './types.js';

/** Boot-to-first-command of the VM executor's guest, and the per-step overhead once booted. */
export async function run(): Promise<BenchResult[]> {
  const t = await measureBootTimes({ cacheDir: join(defaultCacheDir(), 'vm'), runs: 5 });
  const tcg = !/^KVM/.test(t.accel);
  return [
    { name: `VM boot to first command (${t.accel}), median of ${t.samplesMs.length}`, value: t.medianMs, unit: 'ms', goal: tcg ? '<= 3000 (TCG)' : '<= 500 (KVM)', note: `samples ${t.samplesMs.map((x) => Math.round(x)).join(', ')}` },
    { name: `VM per-step overhead (a \`true\` step, ${t.accel})`, value: t.stepOverheadMs, unit: 'ms' },
  ];
}
