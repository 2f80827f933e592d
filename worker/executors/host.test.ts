import assert from 'node:assert/strict';
import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, test } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import type { Sandbox, StepOutcome, StepRequest } from './executor.js';
import { HostExecutor } from './host.js';
import { until, whenSteady } from '../../test/helpers/wait.js';

const executor = new HostExecutor();
const dirs: string[] = [];

async function openSandbox(): Promise<{ sandbox: Sandbox; workdir: string }> {
  const workdir = mkdtempSync(join(tmpdir(), 'crowdbake-htest-'));
  dirs.push(workdir);
  const sandbox = await executor.open({ id: 'host', workdir, environment: { base: 'busybox', setup: [] }, limits: {}, network: false });
  return { sandbox, workdir };
}

interface Ran extends StepOutcome { stdout: string; stderr: string; ms: number }

async function run(sandbox: Sandbox, cmd: string | string[], extra: Partial<StepRequest> = {}): Promise<Ran> {
  const out = { stdout: '', stderr: '' };
  const started = Date.now();
  const outcome = await sandbox.run({
    run: cmd, env: {}, timeoutMs: 20_000, signal: new AbortController().signal,
    onOutput: (chunk, stream) => { out[stream] += chunk.toString(); },
    ...extra,
  });
  return { ...outcome, ...out, ms: Date.now() - started };
}

/** Alive and not a zombie. */
function alive(pid: number): boolean {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    return stat.slice(stat.lastIndexOf(')') + 2, stat.lastIndexOf(')') + 3) !== 'Z';
  } catch {
    return false;
  }
}

async function eventuallyDead(pid: number): Promise<void> {
  for (let i = 0; i < 40 && alive(pid); i++) await sleep(50);
  assert.equal(alive(pid), false, `process ${pid} survived`);
}

describe('HostExecutor', () => {
  after(() => { for (const d of dirs) rmSync(d, { recursive: true, force: true }); });

  test('is available and says that base is ignored', async () => {
    assert.deepEqual(await executor.isAvailable(), { ok: true });
    const lines: string[] = [];
    await executor.prepare({ base: 'busybox', setup: [] }, (l) => lines.push(l));
    assert.match(lines.join('\n'), /base "busybox" is ignored/);
  });

  test('streams output and returns the exit code, in the workdir with HOME there', async () => {
    const { sandbox, workdir } = await openSandbox();
    const r = await run(sandbox, 'echo out; echo err >&2; echo "$HOME $FOO"; pwd; exit 4', { env: { FOO: 'bar' } });
    assert.equal(r.stdout, `out\n${workdir} bar\n${workdir}\n`);
    assert.equal(r.stderr, 'err\n');
    assert.deepEqual([r.exitCode, r.stopped], [4, null]);
    const argv = await run(sandbox, ['printf', '%s|', 'a b', '$X']);
    assert.deepEqual([argv.stdout, argv.exitCode], ['a b|$X|', 0]);
    await sandbox.destroy();
  });

  test('a timeout kills the whole tree, grandchildren included', async () => {
    const { sandbox, workdir } = await openSandbox();
    const r = await run(sandbox, 'sleep 100 & echo $! > bg; setsid sleep 100 & echo $! > escaped; sleep 100', { timeoutMs: 800 });
    assert.equal(r.stopped, 'timeout');
    assert.equal(r.message, 'step exceeded its time limit of 800ms');
    assert.ok(r.ms < 5000, `took ${r.ms} ms`);
    await eventuallyDead(Number(readFileSync(join(workdir, 'bg'), 'utf8')));
    await eventuallyDead(Number(readFileSync(join(workdir, 'escaped'), 'utf8')));
    await sandbox.destroy();
  });

  test('what a step leaves running in the background dies when it exits', async () => {
    const { sandbox, workdir } = await openSandbox();
    const r = await run(sandbox, 'sleep 100 & echo $! > bg; echo done');
    assert.deepEqual([r.stdout, r.exitCode], ['done\n', 0]);
    assert.ok(r.ms < 50_000, `took ${r.ms} ms: the step waited for its background sleep 100`);
    await eventuallyDead(Number(readFileSync(join(workdir, 'bg'), 'utf8')));
    await sandbox.destroy();
  });

  test('aborting the signal cancels the step', async () => {
    const { sandbox } = await openSandbox();
    const ac = new AbortController();
    setTimeout(() => ac.abort(), 300);
    const r = await run(sandbox, 'sleep 100', { signal: ac.signal });
    assert.equal(r.stopped, 'cancelled');
    assert.ok(r.ms < 50_000, `took ${r.ms} ms: the sleep 100 ran on after the abort`);
  });

  test('freeze stops the step and its timer; thaw resumes both', async () => {
    const { sandbox, workdir } = await openSandbox();
    const counter = join(workdir, 'counter');
    const read = (): number => (existsSync(counter) ? Number(readFileSync(counter, 'utf8').trim() || '0') : 0);
    const step = run(sandbox, 'i=0; while true; do i=$((i+1)); echo $i > counter.tmp; mv counter.tmp counter; sleep 0.05; done',
      { timeoutMs: 4000 });
    await until('the step\'s loop to count', () => read() >= 2);
    await sandbox.freeze();
    // A write of the loop's already under way when the freezer hit lands; then nothing moves.
    const frozenAt = await whenSteady('the frozen counter', async () => read(), () => undefined, 200);
    await sleep(1000);
    assert.equal(read(), frozenAt, 'counter moved while frozen');
    await sandbox.thaw();
    await until('the counter to move after thaw', () => read() > frozenAt);
    const r = await step;
    assert.equal(r.stopped, 'timeout');
    assert.ok(r.ms >= 4000 + 1000, `timed out after ${r.ms} ms: frozen time was counted`);
  });

  test('a step started while frozen waits for thaw', async () => {
    const { sandbox } = await openSandbox();
    await sandbox.freeze();
    let finished = false;
    // Frozen longer than its time limit: a timer that counted frozen time would stop it; the
    // limit is wide enough for a loaded machine to spawn the step after the thaw.
    const step = run(sandbox, 'echo ran', { timeoutMs: 3000 }).finally(() => { finished = true; });
    await sleep(3500);
    assert.equal(finished, false);
    await sandbox.thaw();
    const r = await step;
    assert.deepEqual([r.stdout, r.exitCode, r.stopped], ['ran\n', 0, null]);
  });
});
