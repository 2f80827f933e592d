import assert from 'node:assert/strict';
import { execFileSync, spawnSync } from 'node:child_process';
import { copyFileSync, mkdirSync, mkdtempSync, readFileSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, test } from 'node:test';
import type { EnvironmentSpec } from '../../../protocol/build-spec.js';
import { ContainerExecutor } from '../container.js';
import type { Sandbox } from '../executor.js';

// Real podman. Each environment adds a 1 MiB layer of random bytes, so sizes are predictable;
// the nonce keeps the layers this run's own. Eviction only ever looks at this test's index.
const MiB = 1024 * 1024;
const nonce = `${process.pid}-${Date.now()}`;
const ownerId = `test-evict-${process.pid}`;
const dirs: string[] = [];
function tempDir(): string {
  const d = mkdtempSync(join(tmpdir(), 'crowdbake-evict-'));
  dirs.push(d);
  return d;
}
const cacheDir = tempDir();
const made = new Set<string>();
// Images the user made: tagged under a docker.io name (image: takes registry references only,
// never localhost/), present locally, so the executor uses them without pulling.
const userImages = [`docker.io/crowdbake-test/user-${nonce}:plain`, `docker.io/crowdbake-test/user-${nonce}:labelled`];

const blob = (name: string): EnvironmentSpec => ({ base: 'busybox', setup: [`head -c ${MiB} /dev/urandom > /blob-${name}-${nonce}`] });

/** Prepares and returns the environment's image and the progress lines. */
async function prepare(executor: ContainerExecutor, environment: EnvironmentSpec): Promise<{ ref: string; lines: string[] }> {
  const lines: string[] = [];
  const { ref } = await executor.environments.prepare(environment, (l) => lines.push(l));
  made.add(ref);
  return { ref, lines };
}

function exists(ref: string): boolean {
  return spawnSync('podman', ['image', 'exists', ref]).status === 0;
}

function importUserImage(ref: string, changes: string[]): void {
  const dir = tempDir();
  mkdirSync(join(dir, 'root', 'bin'), { recursive: true });
  writeFileSync(join(dir, 'root', 'hello'), 'mine\n');
  copyFileSync('/bin/busybox', join(dir, 'root', 'bin', 'busybox'));
  for (const applet of ['sh', 'head', 'sleep']) symlinkSync('busybox', join(dir, 'root', 'bin', applet));
  execFileSync('tar', ['-C', join(dir, 'root'), '-cf', join(dir, 'root.tar'), '.']);
  execFileSync('podman', ['import', '--change', 'ENV PATH=/bin', ...changes.flatMap((c) => ['--change', c]), join(dir, 'root.tar'), ref], { stdio: 'ignore' });
}

describe('environment cache eviction (real podman)', () => {
  after(async () => {
    await new ContainerExecutor({ ownerId }).cleanupStale();
    for (const ref of [...made].reverse()) spawnSync('podman', ['rmi', ref], { stdio: 'ignore' });
    for (const ref of userImages) spawnSync('podman', ['rmi', ref], { stdio: 'ignore' });
    for (const d of dirs) rmSync(d, { recursive: true, force: true });
  });

  test('over budget, the least recently used environment goes first', async () => {
    const executor = new ContainerExecutor({ ownerId, cacheDir, cacheBudgetBytes: Math.floor(2.5 * MiB) });
    const a = await prepare(executor, blob('a'));
    const b = await prepare(executor, blob('b'));
    assert.ok(!b.lines.some((l) => l.includes('evicted')), b.lines.join('\n'));
    const again = await prepare(executor, blob('a'));
    assert.ok(again.lines.some((l) => l.includes('reused from cache')), 'a is used again, so b is now the oldest');
    const c = await prepare(executor, blob('c'));
    const evicted = c.lines.filter((l) => l.includes('evicted'));
    assert.equal(evicted.length, 1, c.lines.join('\n'));
    assert.match(evicted[0]!, new RegExp(`evicted ${b.ref} \\(busybox \\+ 1 setup step, 1\\.\\d MiB, last used `));
    assert.deepEqual([exists(a.ref), exists(b.ref), exists(c.ref)], [true, false, true]);
    const index = JSON.parse(readFileSync(join(cacheDir, 'index.json'), 'utf8')) as { images: Record<string, unknown> };
    assert.deepEqual(Object.keys(index.images).sort(), [a.ref, c.ref].sort());
  });

  test('the environment in use and images the user made are never evicted', async () => {
    importUserImage(userImages[0]!, []);
    importUserImage(userImages[1]!, ['LABEL crowdbake.env=1']);
    // Even an index entry naming a user's image (unlabelled) does not make it a candidate.
    const indexFile = join(cacheDir, 'index.json');
    const index = JSON.parse(readFileSync(indexFile, 'utf8')) as { images: Record<string, unknown> };
    index.images[userImages[0]!] = { lastUsed: 0, parent: null, environment: 'planted' };
    writeFileSync(indexFile, JSON.stringify(index));

    const tiny = new ContainerExecutor({ ownerId, cacheDir, cacheBudgetBytes: 1 });
    const onUser: EnvironmentSpec = { base: `image:${userImages[0]!}`, setup: [`head -c ${MiB} /dev/urandom > /blob-d-${nonce}`] };
    const d = await prepare(tiny, onUser);
    let sandbox: Sandbox | undefined = await tiny.open({ id: `ev${process.pid}`, workdir: tempDir(), environment: onUser, limits: {}, network: false });
    try {
      const e = await prepare(tiny, blob('e'));
      assert.ok(exists(e.ref), 'the environment just prepared stays, even over budget');
      assert.ok(exists(d.ref), 'an image a sandbox runs from is not removed');
      assert.ok(e.lines.some((l) => /over its budget of 1 bytes, but what is left is in use|could not evict/.test(l)), e.lines.join('\n'));
      await sandbox.destroy();
      sandbox = undefined;
      const f = await prepare(tiny, blob('f'));
      assert.ok(f.lines.some((l) => l.includes(`evicted ${d.ref}`)), f.lines.join('\n'));
      assert.deepEqual([exists(d.ref), exists(e.ref), exists(f.ref)], [false, false, true]);
      for (const ref of userImages) assert.ok(exists(ref), `${ref} was touched`);
    } finally {
      await sandbox?.destroy();
    }
  });
});
