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
import { detectIdleSource } from '../worker/idle/detect-idle.js';
import type { IdleSource } from '../worker/idle/idle-source.js';
import { X11IdleSource } from '../worker/idle/x11-idle.js';
import { startMutter, startSway, type Compositor } from '../test/helpers/wayland.js';
import { startXvfb } from '../test/helpers/xvfb.js';
import { median, percentile, type BenchResult } from './types.js';

const N = 20;

/**
 * Input -> every build process stopped: a real display server, real input, the agent's idle
 * source and governor, and a build busy in a sandbox. The clock starts just before the input
 * is made (so it includes the input tool's own start) and stops when the sandbox reports frozen.
 *  - X11: Xvfb, xdotool, the X11 source (XInput2 events); a container and a host build.
 *  - Wayland (wlroots): a headless sway, wtype (virtual keyboard), the `wayland` source (swayidle).
 *  - GNOME: a headless Mutter, a key through its RemoteDesktop D-Bus API, the `mutter` source.
 */
export async function run(): Promise<BenchResult[]> {
  const out: BenchResult[] = [];
  const x = await startXvfb();
  try {
    for (const [label, executor] of [['container', new ContainerExecutor({ ownerId: 'bench-idle' })], ['host', new HostExecutor()]] as const) {
      let i = 0;
      const input = async () => { execFileSync('xdotool', ['mousemove', String(10 + (i++ % 2) * 10), '10'], { env: { ...process.env, DISPLAY: x.display } }); };
      out.push(...await measure(label, executor as Executor, new X11IdleSource(x.display, 'bench'), input, 'Xvfb + xdotool, XInput2 events'));
    }
  } finally {
    x.close();
  }
  for (const [label, start, choice, how] of [
    ['wayland: sway, host', startSway, 'wayland', 'headless sway 1.7 + wtype, swayidle (org_kde_kwin_idle), 1 s idle timeout'],
    ['mutter, host', startMutter, 'mutter', 'headless Mutter 43 + RemoteDesktop key, IdleMonitor user-active watch'],
  ] as const) {
    const c: Compositor = await start();
    try {
      const src = await detectIdleSource(choice, { ...process.env, ...c.env });
      out.push(...await measure(label, new HostExecutor(), src, () => c.input(), how));
    } finally {
      c.close();
    }
  }
  return out;
}

async function measure(label: string, executor: Executor, source: IdleSource, input: () => Promise<void>, how: string): Promise<BenchResult[]> {
  const dir = mkdtempSync(join(tmpdir(), 'crowdbake-bench-idle-'));
  await executor.prepare({ base: 'busybox', setup: [] }, () => undefined);
  const sandbox = await executor.open({ id: `bench-idle-${process.pid}-${label}`, workdir: dir, environment: { base: 'busybox', setup: [] }, limits: {}, network: false });
  const gate = new FreezeGate();
  await gate.attach(sandbox);
  const controller = new AbortController();
  const step = sandbox.run({ run: 'while :; do :; done', env: {}, timeoutMs: 600_000, signal: controller.signal, onOutput: () => undefined });
  const prefs = PreferencesSchema.parse({ when: 'idle', idleAfterMs: 300 });
  const governor = new Governor(source, () => prefs, () => true);
  let frozenAt = 0;
  let resolveFrozen: () => void = () => undefined;
  governor.on('change', (d) => {
    if (d.run) void gate.thaw();
    else void gate.freeze().then(() => { frozenAt = performance.now(); resolveFrozen(); });
  });
  await governor.start();
  const samples: number[] = [];
  const inputOnly: number[] = [];
  try {
    for (let i = 0; i < N; i++) {
      // Wait until idle long enough that builds run again.
      while (!governor.current.run) await new Promise((r) => setTimeout(r, 20));
      await new Promise((r) => setTimeout(r, 100));
      const frozen = new Promise<void>((r) => { resolveFrozen = r; });
      const t0 = performance.now();
      await input();
      inputOnly.push(performance.now() - t0);
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
    { name: `input -> build stopped (${label}), p95`, value: percentile(samples, 95), unit: 'ms', goal: '<= 20', note: `N=${N}, ${how}` },
    { name: `input tool alone (${label}), median`, value: median(inputOnly), unit: 'ms', note: 'part of the rows above: making the input (the tool\'s own start) until it returns' },
  ];
}
