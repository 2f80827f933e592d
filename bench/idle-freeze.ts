import { execFileSync } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { performance } from 'node:perf_hooks';
import { PreferencesSchema } from '../protocol/control-api.js';
import { ContainerExecutor } from '../worker/executors/container.js';
import { HostExecutor } from '../worker/executors/host.js';
import type { Executor } from '../worker/executors/executor.js';
import { FreezeGate } from '../worker/freeze-gate.js';
import { Governor } from '../worker/governor.js';
import { X11IdleSource } from '../worker/idle/x11-idle.js';
import { startXvfb } from '../test/helpers/xvfb.js';
import { median, percentile, type BenchResult } from './types.js';

const N = 20;

/**
 * Input -> every build process stopped: a real X server (Xvfb), input made with xdotool, the
 * agent's X11 idle source (XInput2 events) and governor, and a build busy in a sandbox. The
 * clock starts when xdotool returns and stops when the sandbox reports frozen.
 */
export async function run(): Promise<BenchResult[]> {
  const x = await startXvfb();
  const out: BenchResult[] = [];
  try {
    for (const [label, executor] of [['container', new ContainerExecutor({ ownerId: 'bench-idle' })], ['host', new HostExecutor()]] as const) {
      out.push(...await measure(label, executor as Executor, x));
    }
  } finally {
    x.close();
  }
  return out;
}

async function measure(label: string, executor: Executor, x: { display: string; input(): void }): Promise<BenchResult[]> {
  const dir = mkdtempSync(join(tmpdir(), 'crowdbake-bench-idle-'));
  await executor.prepare({ base: 'busybox', setup: [] }, () => undefined);
  const sandbox = await executor.open({ id: `bench-idle-${process.pid}-${label}`, workdir: dir, environment: { base: 'busybox', setup: [] }, limits: {}, network: false });
  const gate = new FreezeGate();
  await gate.attach(sandbox);
  const controller = new AbortController();
  const step = sandbox.run({ run: 'while :; do :; done', env: {}, timeoutMs: 600_000, signal: controller.signal, onOutput: () => undefined });
  const prefs = PreferencesSchema.parse({ when: 'idle', idleAfterMs: 300 });
  const governor = new Governor(new X11IdleSource(x.display, 'bench'), () => prefs, () => true);
  let frozenAt = 0;
  let resolveFrozen: () => void = () => undefined;
  governor.on('change', (d) => {
    if (d.run) void gate.thaw();
    else void gate.freeze().then(() => { frozenAt = performance.now(); resolveFrozen(); });
  });
  await governor.start();
  const samples: number[] = [];
  try {
    for (let i = 0; i < N; i++) {
      // Wait until idle long enough that builds run again.
      while (!governor.current.run) await new Promise((r) => setTimeout(r, 20));
      await new Promise((r) => setTimeout(r, 100));
      const frozen = new Promise<void>((r) => { resolveFrozen = r; });
      const t0 = performance.now();
      execFileSync('xdotool', ['mousemove', String(10 + (i % 2) * 10), '10'], { env: { ...process.env, DISPLAY: x.display } });
      await frozen;
      samples.push(frozenAt - t0);
    }
  } finally {
    governor.close();
    controller.abort();
    await gate.thaw();
    await step.catch(() => undefined);
    await sandbox.destroy();
    rmSync(dir, { recursive: true, force: true });
  }
  return [
    { name: `input -> build stopped (${label}), median`, value: median(samples), unit: 'ms', goal: '<= 100' },
    { name: `input -> build stopped (${label}), p95`, value: percentile(samples, 95), unit: 'ms', note: `N=${N}, Xvfb + xdotool, XInput2 events` },
  ];
}
