import assert from 'node:assert/strict';
import { mkdtempSync, readdirSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, test } from 'node:test';
import type { EnvironmentSpec } from '../../../protocol/build-spec.js';
import { ContainerExecutor } from '../container.js';

// Real debootstrap from deb.debian.org, as root. The declaration is fixed on purpose and its
// images are NOT removed afterwards: they live in podman's store, which is global to the
// machine, so the first (cold) run of this test builds the base once (about a minute, more on
// a slow mirror) and every later run, and any other process asking meanwhile (lock file),
// reuses it. A warm run must take under 10 s.
const environment: EnvironmentSpec = { base: 'debootstrap:bookworm', setup: ['echo ok > /etc/crowdbake-setup'] };
const ownerId = `test-debootstrap-${process.pid}`;
const dirs: string[] = [];
function tempDir(): string {
  const d = mkdtempSync(join(tmpdir(), 'crowdbake-deb-'));
  dirs.push(d);
  return d;
}

describe('debootstrap environments (real debootstrap, cached per machine)', () => {
  after(async () => {
    await new ContainerExecutor({ ownerId }).cleanupStale();
    for (const d of dirs) rmSync(d, { recursive: true, force: true });
  });

  test('debootstrap:bookworm minbase + one setup line; a step reads /etc/debian_version', { timeout: 20 * 60_000 }, async (t) => {
    const executor = new ContainerExecutor({ ownerId, cacheDir: tempDir() });
    const lines: string[] = [];
    const started = Date.now();
    await executor.prepare(environment, (l) => lines.push(l));
    const preparedMs = Date.now() - started;
    const last = lines[lines.length - 1] ?? '';
    const warm = /: reused from cache \(localhost\/crowdbake-env:[0-9a-f]{16}\)$/.test(last);
    const cold = lines.some((l) => l.startsWith('debootstrap --variant=minbase bookworm http://deb.debian.org/debian'));
    if (cold) {
      assert.ok(lines.some((l) => l.startsWith('I: ')), 'debootstrap output reaches progress');
      assert.ok(lines.some((l) => /^debootstrap finished in [\d.]+ s; importing as localhost\/crowdbake-env:debootstrap-bookworm-[0-9a-f]{12}$/.test(l)),
        lines.join('\n'));
    }
    assert.match(last, /^environment debootstrap:bookworm \+ 1 setup step: /);

    const sandbox = await executor.open({ id: `deb${process.pid}`, workdir: tempDir(), environment, limits: {}, network: false });
    let stdout = '';
    try {
      const r = await sandbox.run({
        run: 'cat /etc/debian_version /etc/crowdbake-setup; echo "$PATH"', env: {}, timeoutMs: 30_000,
        signal: new AbortController().signal, onOutput: (c, s) => { if (s === 'stdout') stdout += c.toString(); },
      });
      assert.equal(r.exitCode, 0);
    } finally {
      await sandbox.destroy();
    }
    assert.match(stdout, /^12\.\d+\nok\n\/usr\/local\/sbin:\/usr\/local\/bin:\/usr\/sbin:\/usr\/bin:\/sbin:\/bin\n$/);
    const totalMs = Date.now() - started;
    t.diagnostic(`${warm ? 'warm' : cold ? 'cold' : 'partly cached'}: prepare ${preparedMs} ms, with the step ${totalMs} ms`);
    // How long a warm run takes is measured in bench/, not asserted here: the machine's load decides it.
  });

  test('a failing debootstrap names suite, mirror and reason, caches nothing and leaves no temporary root', async () => {
    const cacheDir = tempDir();
    const executor = new ContainerExecutor({ ownerId, cacheDir });
    const lines: string[] = [];
    await assert.rejects(executor.prepare({ base: 'debootstrap:bookworm@http://127.0.0.1:9/debian', setup: [] }, (l) => lines.push(l)),
      /^Error: debootstrap bookworm http:\/\/127\.0\.0\.1:9\/debian failed with exit code 1: .*127\.0\.0\.1:9/);
    assert.ok(lines.some((l) => l.startsWith('I: ') || l.startsWith('E: ')), lines.join('\n'));
    assert.deepEqual(readdirSync(join(cacheDir, 'tmp')), []);
  });
});
