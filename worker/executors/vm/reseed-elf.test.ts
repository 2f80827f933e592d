import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { arch, platform, tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { reseedElf } from './reseed-elf.js';

// The program's effect (two restored guests read different random bytes) is shown with real
// QEMU in vm-snapshot.test.ts; here, that it is a valid program that refuses what it must.
test('crowdbake-reseed is a static x86-64 program that refuses a short seed and a stdout that is not the RNG', (t) => {
  const elf = reseedElf();
  assert.equal(elf.subarray(0, 4).toString('latin1'), '\x7fELF');
  assert.equal(elf.length, 224);
  if (platform() !== 'linux' || arch() !== 'x64') return t.skip('runs only on x86-64 Linux');
  const dir = mkdtempSync(join(tmpdir(), 'crowdbake-reseed-'));
  try {
    const bin = join(dir, 'reseed');
    writeFileSync(bin, elf, { mode: 0o755 });
    const devNull = spawnSync('sh', ['-c', `"$0" > /dev/null`, bin], { input: randomBytes(32) });
    assert.equal(devNull.status, 1, 'ioctl on /dev/null fails: exit 1');
    const short = spawnSync('sh', ['-c', `"$0" > /dev/urandom`, bin], { input: randomBytes(5) });
    assert.equal(short.status, 1, 'a 5-byte seed: exit 1, even where the ioctls would work');
    // As root the ioctls work on the host's own RNG too (crediting 32 real random bytes is harmless).
    if (process.getuid?.() === 0) {
      const ok = spawnSync('sh', ['-c', `"$0" > /dev/urandom`, bin], { input: randomBytes(32) });
      assert.equal(ok.status, 0, 'a 32-byte seed into /dev/urandom as root: exit 0');
    }
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});
