import assert from 'node:assert/strict';
import { execFile, execFileSync, spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import type { EnvironmentSpec } from '../../../protocol/build-spec.js';
import { busyboxImage } from '../busybox-image.js';
import { ContainerExecutor } from '../container.js';
import { layerKeys, layerTag } from './keys.js';

// Real podman. Setup lines carry a nonce so each run builds fresh layers; the images are
// removed at the end. The cache index lives in a temporary directory.
const nonce = `${process.pid}-${Date.now()}`;
const ownerId = `test-env-${process.pid}`;
const dirs: string[] = [];
function tempDir(): string {
  const d = mkdtempSync(join(tmpdir(), 'crowdbake-envtest-'));
  dirs.push(d);
  return d;
}
const executor = new ContainerExecutor({ ownerId, cacheDir: tempDir() });
const made = new Set<string>();

function recorder(): { lines: string[]; progress: (line: string) => void } {
  const lines: string[] = [];
  return { lines, progress: (line) => { lines.push(line); for (const t of line.match(/localhost\/crowdbake-env:[0-9a-f]{16}/g) ?? []) made.add(t); } };
}

function imageId(ref: string): string | null {
  try {
    return execFileSync('podman', ['image', 'inspect', '--format', '{{.Id}}', ref], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'] }).trim();
  } catch {
    return null;
  }
}

async function tags(environment: EnvironmentSpec): Promise<string[]> {
  const { sha256 } = await busyboxImage();
  const t = layerKeys(`busybox sha256:${sha256}`, environment.setup).slice(1).map((k) => layerTag(k));
  for (const tag of t) made.add(tag);
  return t;
}

async function runIn(environment: EnvironmentSpec, cmd: string): Promise<{ stdout: string; exitCode: number | null }> {
  const sandbox = await executor.open({ id: `e${process.pid}-${made.size}-${Date.now() % 100000}`, workdir: tempDir(), environment, limits: {}, network: false });
  try {
    let stdout = '';
    const r = await sandbox.run({
      run: cmd, env: {}, timeoutMs: 20_000, signal: new AbortController().signal,
      onOutput: (chunk, stream) => { if (stream === 'stdout') stdout += chunk.toString(); },
    });
    return { stdout, exitCode: r.exitCode };
  } finally {
    await sandbox.destroy();
  }
}

const has = (lines: string[], re: RegExp): boolean => lines.some((l) => re.test(l));
const count = (lines: string[], re: RegExp): number => lines.filter((l) => re.test(l)).length;

describe('declared environments: setup layers (real podman)', () => {
  after(async () => {
    await executor.cleanupStale();
    // Children first, so each removal frees its layer.
    for (const tag of [...made].reverse()) spawnSync('podman', ['rmi', tag], { stdio: 'ignore' });
    for (const d of dirs) rmSync(d, { recursive: true, force: true });
  });

  test('busybox + 2 setup lines: built, then reused; changing line 2 rebuilds only layer 2', async (t) => {
    const one = `echo ${nonce} > /etc/setup-one`;
    const first: EnvironmentSpec = { base: 'busybox', setup: [one, 'cat /etc/setup-one > /etc/setup-two; echo two done'] };
    const [tag1, tag2] = await tags(first);

    const a = recorder();
    await executor.prepare(first, a.progress);
    assert.ok(has(a.lines, /^setup 1\/2 building: echo /), a.lines.join('\n'));
    assert.ok(has(a.lines, /^setup 2\/2 building: cat /), a.lines.join('\n'));
    assert.ok(a.lines.includes('two done'), 'setup output reaches progress');
    assert.ok(has(a.lines, /environment busybox \+ 2 setup steps: built 2 layers in [\d.]+ s, reused 1 from cache/), a.lines.join('\n'));
    const layer1 = imageId(tag1!);
    assert.ok(layer1 && imageId(tag2!));

    const b = recorder();
    const started = Date.now();
    await executor.prepare(first, b.progress);
    assert.deepEqual(b.lines, [`environment busybox + 2 setup steps: reused from cache (${tag2!})`]);
    // That it was reused, not rebuilt, is the line above; how fast is bench/'s to say.
    t.diagnostic(`reuse took ${Date.now() - started} ms`);

    const second: EnvironmentSpec = { base: 'busybox', setup: [one, 'echo changed > /etc/setup-two'] };
    const [again1, new2] = await tags(second);
    assert.equal(again1, tag1);
    const c = recorder();
    await executor.prepare(second, c.progress);
    assert.ok(has(c.lines, new RegExp(`setup 1\\.\\.1 reused from cache \\(${tag1!}\\)`)), c.lines.join('\n'));
    assert.equal(count(c.lines, /building/), 1, c.lines.join('\n'));
    assert.ok(has(c.lines, /^setup 2\/2 building: echo changed/), c.lines.join('\n'));
    assert.ok(has(c.lines, /built 1 layer in [\d.]+ s, reused 2 from cache/), c.lines.join('\n'));
    assert.equal(imageId(tag1!), layer1, 'layer 1 was not rebuilt');
    assert.notEqual(imageId(new2!), null);
    assert.notEqual(imageId(new2!), imageId(tag2!));

    assert.deepEqual(await runIn(first, 'cat /etc/setup-one /etc/setup-two'), { stdout: `${nonce}\n${nonce}\n`, exitCode: 0 });
    assert.deepEqual(await runIn(second, 'cat /etc/setup-one /etc/setup-two'), { stdout: `${nonce}\nchanged\n`, exitCode: 0 });
  });

  test('a failing setup line names itself and its exit code, and nothing is cached for it', async () => {
    const environment: EnvironmentSpec = { base: 'busybox', setup: [`echo ${nonce} > /ok`, 'echo about to fail; exit 7'] };
    const [tag1, tag2] = await tags(environment);
    for (let i = 0; i < 2; i++) {
      const r = recorder();
      await assert.rejects(executor.prepare(environment, r.progress),
        /^Error: setup 2\/2 "echo about to fail; exit 7" failed with exit code 7; nothing was cached for it$/);
      assert.ok(r.lines.includes('about to fail'), r.lines.join('\n'));
      assert.equal(has(r.lines, /setup 1\/2 building/), i === 0, 'line 1 is built once and then reused');
    }
    assert.notEqual(imageId(tag1!), null);
    assert.equal(imageId(tag2!), null);
    const left = execFileSync('podman', ['ps', '-a', '--filter', `label=crowdbake.owner=${ownerId}`, '--format', '{{.Names}}'], { encoding: 'utf8' });
    assert.equal(left.trim(), '', 'setup containers are removed');
    await assert.rejects(executor.prepare({ base: 'busybox', setup: ['nosuchcommand-crowdbake'] }, () => {}),
      /setup 1\/1 "nosuchcommand-crowdbake" failed with exit code 127/);
  });

  test('open() makes the environment again if its image vanished after prepare()', async () => {
    const environment: EnvironmentSpec = { base: 'busybox', setup: [`echo ${nonce} > /v`] };
    const [tag] = await tags(environment);
    await executor.prepare(environment, () => {});
    execFileSync('podman', ['rmi', tag!], { stdio: 'ignore' });
    assert.deepEqual(await runIn(environment, 'cat /v'), { stdout: `${nonce}\n`, exitCode: 0 });
    assert.notEqual(imageId(tag!), null);
  });

  test('unknown bases are refused, naming the base', async () => {
    await assert.rejects(executor.prepare({ base: 'vm:disk.qcow2', setup: [] }, () => {}),
      /^Error: base "vm:disk.qcow2" is not supported by the container executor yet \(it supports busybox, debootstrap:SUITE\[@MIRROR\], rootfs:NAME.tar, rootfs:URL#sha256=HEX and image:REF\)$/);
    await assert.rejects(executor.prepare({ base: 'debootstrap:no-such-suite', setup: [] }, () => {}),
      /debootstrap does not know suite "no-such-suite"/);
    await assert.rejects(executor.prepare({ base: 'rootfs:/nonexistent/root.tar', setup: ['true'] }, () => {}),
      /base "rootfs:\/nonexistent\/root.tar" names a path on the worker/);
    await assert.rejects(executor.prepare({ base: 'rootfs:root.tar', setup: ['true'] }, () => {}),
      /names a file in the volunteer's bases directory, and this worker has none/);
  });

  test('two prepares of the same declaration at once build it once', async () => {
    const environment: EnvironmentSpec = { base: 'busybox', setup: [`echo ${nonce} > /c; sleep 1; echo slept`] };
    await tags(environment);
    const a = recorder();
    const b = recorder();
    await Promise.all([executor.prepare(environment, a.progress), executor.prepare(environment, b.progress)]);
    const all = [...a.lines, ...b.lines];
    assert.equal(count(all, /^setup 1\/1 building/), 1, all.join('\n'));
    assert.equal(count(all, /already being built for another build on this worker; waiting for it/), 1, all.join('\n'));
    assert.equal(count(all, /^slept$/), 2, 'the waiting build sees the output too');
    assert.deepEqual(await runIn(environment, 'cat /c'), { stdout: `${nonce}\n`, exitCode: 0 });
  });

  test('two processes preparing the same declaration build it once (lock file)', async () => {
    const environment: EnvironmentSpec = { base: 'busybox', setup: [`echo ${nonce} > /p; sleep 2`] };
    await tags(environment);
    const container = fileURLToPath(new URL('../container.js', import.meta.url));
    const script = `
      const { ContainerExecutor } = await import(${JSON.stringify(container)});
      const e = new ContainerExecutor({ ownerId: process.argv[1], cacheDir: process.argv[2] });
      await e.prepare(JSON.parse(process.argv[3]), (l) => console.log(l));`;
    const run = (i: number): Promise<{ stdout: string }> => promisify(execFile)(process.execPath,
      ['--input-type=module', '-e', script, `${ownerId}-p${i}`, tempDir(), JSON.stringify(environment)]);
    const outs = await Promise.all([run(1), run(2)]);
    const all = outs.flatMap((o) => o.stdout.split('\n'));
    for (const l of all) recorder().progress(l);
    assert.equal(count(all, /^setup 1\/1 building/), 1, all.join('\n'));
    assert.ok(has(all, /another process on this machine \(pid \d+\) is building it; waiting|reused from cache/), all.join('\n'));
  });
});
