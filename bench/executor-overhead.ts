import { execFile } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { performance } from 'node:perf_hooks';
import { promisify } from 'node:util';
import { ensureBusyboxImage } from '../worker/executors/busybox-image.js';
import { ContainerSandbox } from '../worker/executors/container-sandbox.js';
import { ContainerExecutor } from '../worker/executors/container.js';
import type { Executor, Sandbox } from '../worker/executors/executor.js';
import { FastOps } from '../worker/executors/fast/fast-ops.js';
import { findRuncRoot } from '../worker/executors/fast/runc-state.js';
import { HostExecutor } from '../worker/executors/host.js';
import { CREATE_FLAGS } from '../worker/executors/podman.js';
import { median, type BenchResult } from './types.js';

const N = 20;
const BUSYBOX = { base: 'busybox', setup: [] };
const exec = promisify(execFile);

/**
 * Per-build overhead of the executors: everything a build costs beyond its own commands
 * (open, each step's start and end, destroy), for 1-step and 3-step builds of `true`, next to
 * a bare `podman run` and the host executor, cold and with a warm sandbox (made ahead); and freeze/thaw latency (call → the kernel
 * reports every process of the sandbox stopped / running). Medians of N=20.
 */
export async function run(): Promise<BenchResult[]> {
  // The cold fast path without warm sandboxes; `warm` with one kept ready (as a worker's default --warm 1, root only).
  const fast = new ContainerExecutor({ ownerId: 'bench-overhead-fast', warmSandboxes: 0 });
  const warm = new ContainerExecutor({ ownerId: 'bench-overhead-warm', warmSandboxes: 1 });
  const plain = new ContainerExecutor({ ownerId: 'bench-overhead-plain', fastPath: false });
  const host = new HostExecutor();
  const workRoot = mkdtempSync(join(tmpdir(), 'crowdbake-bench-overhead-'));
  const out: BenchResult[] = [];
  try {
    for (const e of [fast, warm, plain, host]) {
      const a = await e.isAvailable();
      if (!a.ok) throw new Error(`${e.kind} executor unavailable: ${a.reason}`);
      await e.prepare(BUSYBOX, () => undefined);
    }
    if (fast.mode !== 'fast') throw new Error('the fast container path is not available here');
    const image = await ensureBusyboxImage();
    const ctx = { workRoot, seq: 0 };

    out.push(await barePodmanRun(image));
    out.push(...await bareExec(fast, ctx));
    for (const steps of [1, 3]) {
      const f = await builds(fast, ctx, steps);
      out.push({ name: `container executor, fast path: ${steps}-step build overhead (open → run → destroy)`, value: f.total, unit: 'ms',
        goal: warm.warm ? undefined : '<= 50', note: `no warm sandbox: open ${ms(f.open)}, per step ${ms(f.step)}, destroy ${ms(f.destroy)} ms; destroy removes the container before it resolves, so the total including background work is the same` });
      out.push(...await warmBuilds(warm, ctx, steps));
      const p = await builds(plain, ctx, steps);
      out.push({ name: `container executor, plain podman path: ${steps}-step build overhead`, value: p.total, unit: 'ms',
        note: `before: open ${ms(p.open)}, per step ${ms(p.step)}, destroy ${ms(p.destroy)} ms` });
    }
    for (const [label, e] of [['fast path (cgroup freezer)', fast], ['plain path (podman pause)', plain]] as const) {
      const r = await freezeThaw(e, ctx);
      out.push({ name: `container freeze latency, ${label}`, value: r.freeze, unit: 'ms', goal: label.startsWith('fast') ? '<= 5' : undefined });
      out.push({ name: `container thaw latency, ${label}`, value: r.thaw, unit: 'ms' });
    }
    const h = await builds(host, ctx, 1);
    out.push({ name: 'host executor: 1-step build overhead (for comparison)', value: h.total, unit: 'ms' });
  } finally {
    await warm.close().catch(() => undefined);
    await warm.cleanupStale().catch(() => 0);
    await fast.cleanupStale().catch(() => 0);
    await plain.cleanupStale().catch(() => 0);
    rmSync(workRoot, { recursive: true, force: true });
  }
  return out;
}

interface Ctx { workRoot: string; seq: number }

function ms(x: number): string {
  return x.toFixed(x < 10 ? 1 : 0);
}

async function open(e: Executor, ctx: Ctx): Promise<Sandbox> {
  const workdir = mkdtempSync(join(ctx.workRoot, 'w-'));
  return e.open({ id: `bench-${process.pid}-${++ctx.seq}`, workdir, environment: BUSYBOX, limits: {}, network: false });
}

async function step(sandbox: Sandbox, cmd = 'true'): Promise<void> {
  const r = await sandbox.run({ run: cmd, env: { CROWDBAKE: '1' }, timeoutMs: 60_000, signal: new AbortController().signal, onOutput: () => undefined });
  if (r.exitCode !== 0) throw new Error(`\`${cmd}\` failed: ${r.message ?? `exit ${r.exitCode}`}`);
}

/**
 * The fast path with a warm sandbox (worker/executors/warm-pool.ts): the same builds, (a) with
 * the pool refilled between builds (a build farm whose builds are further apart than a warm-up,
 * about a `podman run`), and (b) back to back, the next build opened as soon as the last is
 * destroyed, so it waits for the container being made behind the last one. The background work
 * (podman rm of the used container, making the next) is timed apart: it is off the build's path
 * but not free.
 */
async function warmBuilds(e: ContainerExecutor, ctx: Ctx, steps: number): Promise<BenchResult[]> {
  const pool = e.warm;
  if (!pool) {
    console.log('executor-overhead: warm sandbox rows not measured: warm sandboxes need root (and no SELinux)');
    return [];
  }
  await e.setWarm(true);
  let background: number[] = [];
  const refilled = await builds(e, ctx, steps, async () => {
    const t0 = performance.now();
    await pool.settled();
    background.push(performance.now() - t0);
  });
  const bg = median(background);
  const taken = refilled.warmTaken;
  background = [];
  const backToBack = await builds(e, ctx, steps);
  await pool.settled();
  return [
    { name: `container executor, warm sandbox: ${steps}-step build overhead (open → run → destroy), pool refilled between builds`, value: refilled.total, unit: 'ms', goal: '<= 50',
      note: `open ${ms(refilled.open)}, per step ${ms(refilled.step)}, destroy ${ms(refilled.destroy)} ms; ${taken}/${N} builds took a warm sandbox; afterwards, in the background, podman rm of the used container and making the next: ${ms(bg)} ms` },
    { name: `container executor, warm sandbox: ${steps}-step build overhead, back to back (the next build waits for the sandbox being made)`, value: backToBack.total, unit: 'ms',
      note: `open ${ms(backToBack.open)}, per step ${ms(backToBack.step)}, destroy ${ms(backToBack.destroy)} ms; ${backToBack.warmTaken}/${N} builds took a warm sandbox` },
  ];
}

/**
 * Medians of open, one step, destroy and the whole open → steps → destroy, after one warm-up
 * build; `between` runs after each build, outside the timed part. `warmTaken`: builds that got a
 * warm container (named crowdbake-warm-…).
 */
async function builds(e: Executor, ctx: Ctx, steps: number, between?: () => Promise<void>): Promise<{ open: number; step: number; destroy: number; total: number; warmTaken: number }> {
  const samples = { open: [] as number[], step: [] as number[], destroy: [] as number[], total: [] as number[] };
  let warmTaken = 0;
  for (let i = 0; i <= N; i++) {
    const t0 = performance.now();
    const sandbox = await open(e, ctx);
    const t1 = performance.now();
    for (let s = 0; s < steps; s++) await step(sandbox);
    const t2 = performance.now();
    await sandbox.destroy();
    const t3 = performance.now();
    await between?.();
    if (i === 0) continue;
    if (sandbox instanceof ContainerSandbox && sandbox.name.startsWith('crowdbake-warm-')) warmTaken++;
    samples.open.push(t1 - t0);
    samples.step.push((t2 - t1) / steps);
    samples.destroy.push(t3 - t2);
    samples.total.push(t3 - t0);
  }
  return { open: median(samples.open), step: median(samples.step), destroy: median(samples.destroy), total: median(samples.total), warmTaken };
}

async function barePodmanRun(image: string): Promise<BenchResult> {
  const samples: number[] = [];
  for (let i = 0; i <= N; i++) {
    const t0 = performance.now();
    await exec('podman', ['run', '--rm', '--network', 'none', ...CREATE_FLAGS, image, 'true']);
    if (i > 0) samples.push(performance.now() - t0);
  }
  return { name: 'bare `podman run --rm --network none --runtime runc <ulimits> busybox true`', value: median(samples), unit: 'ms' };
}

/** One step in a running container: the agent, `runc exec` (for reference) and `podman exec`. */
async function bareExec(fast: ContainerExecutor, ctx: Ctx): Promise<BenchResult[]> {
  const sandbox = await open(fast, ctx);
  try {
    if (!(sandbox instanceof ContainerSandbox) || !(sandbox.ops instanceof FastOps)) throw new Error('not a fast-path sandbox');
    const { stdout } = await exec('podman', ['inspect', '--format', '{{.Id}}', sandbox.name]);
    const id = stdout.trim();
    const runcRoot = findRuncRoot();
    const agent: number[] = [];
    const runc: number[] = [];
    const podmanExec: number[] = [];
    for (let i = 0; i <= N; i++) {
      let t0 = performance.now();
      await step(sandbox);
      if (i > 0) agent.push(performance.now() - t0);
      if (runcRoot) {
        t0 = performance.now();
        await exec('runc', ['--root', runcRoot, 'exec', '--cwd', '/work', id, 'true']);
        if (i > 0) runc.push(performance.now() - t0);
      }
      t0 = performance.now();
      await exec('podman', ['exec', '--workdir', '/work', sandbox.name, 'true']);
      if (i > 0) podmanExec.push(performance.now() - t0);
    }
    return [
      { name: 'one `true` step through the in-container agent (fast path)', value: median(agent), unit: 'ms' },
      ...(runc.length ? [{ name: 'bare `runc exec` of `true` in the same container (reference, not used)', value: median(runc), unit: 'ms' }] : []),
      { name: 'bare `podman exec` of `true` in the same container (plain path)', value: median(podmanExec), unit: 'ms' },
    ];
  } finally {
    await sandbox.destroy();
  }
}

/** A busy loop in the sandbox; freeze() and thaw() resolve once the kernel confirms the state. */
async function freezeThaw(e: Executor, ctx: Ctx): Promise<{ freeze: number; thaw: number }> {
  const sandbox = await open(e, ctx);
  const controller = new AbortController();
  const busy = sandbox.run({ run: 'while :; do :; done', env: {}, timeoutMs: 600_000, signal: controller.signal, onOutput: () => undefined });
  const freeze: number[] = [];
  const thaw: number[] = [];
  try {
    await new Promise((r) => setTimeout(r, 200));
    for (let i = 0; i <= N; i++) {
      let t0 = performance.now();
      await sandbox.freeze();
      if (i > 0) freeze.push(performance.now() - t0);
      t0 = performance.now();
      await sandbox.thaw();
      if (i > 0) thaw.push(performance.now() - t0);
      await new Promise((r) => setTimeout(r, 20));
    }
  } finally {
    controller.abort();
    await busy;
    await sandbox.destroy();
  }
  return { freeze: median(freeze), thaw: median(thaw) };
}
