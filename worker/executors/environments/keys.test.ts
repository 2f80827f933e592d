import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, utimesSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, test } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import { describeEnvironment, parseBase } from './base-spec.js';
import { withFileLock } from './file-lock.js';
import { layerKeys, layerTag } from './keys.js';

const dirs: string[] = [];
function tempDir(): string {
  const d = mkdtempSync(join(tmpdir(), 'crowdbake-keys-'));
  dirs.push(d);
  return d;
}

describe('environment keys, bases and locks', () => {
  after(() => { for (const d of dirs) rmSync(d, { recursive: true, force: true }); });

  test('a changed setup line changes its key and the ones after it, not the ones before', () => {
    const a = layerKeys('busybox sha256:1', ['one', 'two', 'three']);
    const b = layerKeys('busybox sha256:1', ['one', 'TWO', 'three']);
    assert.equal(a.length, 4);
    assert.deepEqual(a.slice(0, 2), b.slice(0, 2));
    assert.notEqual(a[2], b[2]);
    assert.notEqual(a[3], b[3]);
    assert.notEqual(layerKeys('busybox sha256:2', ['one'])[1], a[1], 'the base identity is part of every key');
    assert.deepEqual(layerKeys('x', ['a', 'b']).slice(0, 2), layerKeys('x', ['a']), 'a prefix of the setup shares keys');
    assert.notEqual(layerKeys('x', ['a b'])[1], layerKeys('x', ['a', 'b'])[2]);
    assert.match(layerTag(a[1]!), /^localhost\/crowdbake-env:[0-9a-f]{16}$/);
  });

  test('bases parse, with mirrors for Debian and Ubuntu suites, and bad ones are named', () => {
    assert.deepEqual(parseBase('busybox'), { kind: 'busybox' });
    assert.deepEqual(parseBase('debootstrap:bookworm'),
      { kind: 'debootstrap', suite: 'bookworm', mirror: 'http://deb.debian.org/debian', variant: 'minbase' });
    assert.equal((parseBase('debootstrap:bookworm', 'http://mirror.local/debian/') as { mirror: string }).mirror, 'http://mirror.local/debian');
    assert.equal((parseBase('debootstrap:jammy') as { mirror: string }).mirror, 'http://archive.ubuntu.com/ubuntu');
    assert.equal((parseBase('debootstrap:noble@http://ports.ubuntu.com/ubuntu-ports') as { mirror: string }).mirror,
      'http://ports.ubuntu.com/ubuntu-ports');
    assert.deepEqual(parseBase('rootfs:root.tar'), { kind: 'rootfs', file: { from: 'bases-dir', name: 'root.tar' } });
    assert.throws(() => parseBase('rootfs:/x/root.tar'), /names a path on the worker/);
    assert.deepEqual(parseBase('image:docker.io/library/debian:12'), { kind: 'image', ref: 'docker.io/library/debian:12' });
    assert.throws(() => parseBase('debootstrap:Bookworm;rm'), /"Bookworm;rm" is not a Debian or Ubuntu suite name/);
    assert.throws(() => parseBase('debootstrap:bookworm@ftp://x'), /mirror "ftp:\/\/x" must be an http:\/\/ or https:\/\/ URL/);
    assert.throws(() => parseBase('image:--privileged'), /is not a registry reference/);
    assert.throws(() => parseBase('vm:disk.qcow2'), /base "vm:disk.qcow2" is not supported by the container executor yet/);
    assert.equal(describeEnvironment({ base: 'busybox', setup: ['a', 'b'] }), 'busybox + 2 setup steps');
    assert.equal(describeEnvironment({ base: 'busybox', setup: [] }), 'busybox');
  });

  test('the file lock lets one holder in at a time', async () => {
    const dir = tempDir();
    let inside = 0;
    let most = 0;
    const waits: Array<number | null> = [];
    await Promise.all([1, 2, 3].map(() => withFileLock(dir, 'x', async () => {
      inside++;
      most = Math.max(most, inside);
      await sleep(50);
      inside--;
    }, { onWait: (pid) => waits.push(pid) })));
    assert.equal(most, 1);
    assert.deepEqual(waits, [process.pid, process.pid]);
  });

  test('a lock left by a dead process or not touched for too long is taken over', async () => {
    const dir = tempDir();
    writeFileSync(join(dir, 'dead.lock'), '999999999\n');
    assert.equal(await withFileLock(dir, 'dead', async () => 'got it'), 'got it');
    writeFileSync(join(dir, 'old.lock'), `${process.pid}\n`);
    const old = new Date(Date.now() - 10_000);
    utimesSync(join(dir, 'old.lock'), old, old);
    assert.equal(await withFileLock(dir, 'old', async () => 'got it', { staleMs: 5_000 }), 'got it');
    await assert.rejects(withFileLock(dir, '../x', async () => 1), /lock name "..\/x"/);
  });
});
