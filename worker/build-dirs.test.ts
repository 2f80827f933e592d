// A build's directories: an empty pair may pass to the next build (renamed, the same inodes),
// anything a build left, or replaced, is removed instead; and the runner does it only for an
// executor that says so (the host executor), never for a sandbox.
import assert from 'node:assert/strict';
import { existsSync, lstatSync, mkdirSync, mkdtempSync, readdirSync, rmSync, statSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, test } from 'node:test';
import { forgetBuildDirs, makeBuildDir, retireBuildDir } from './build-dirs.js';

const roots: string[] = [];
function workRoot(): string {
  const d = mkdtempSync(join(tmpdir(), 'crowdbake-dirs-'));
  roots.push(d);
  return d;
}
after(() => { for (const d of roots) { forgetBuildDirs(d); rmSync(d, { recursive: true, force: true }); } });

test('an empty pair goes to the next build: the same directories, renamed, and nothing else stays in the work root', () => {
  const root = workRoot();
  const a = join(root, 'b1-a1');
  assert.equal(makeBuildDir(root, a, true, true), true);
  const ino = [statSync(a).ino, statSync(join(a, 'src')).ino];
  retireBuildDir(root, a, true);
  assert.equal(existsSync(a), false);
  const b = join(root, 'b2-a1');
  assert.equal(makeBuildDir(root, b, true, true), true);
  assert.deepEqual([statSync(b).ino, statSync(join(b, 'src')).ino], ino);
  assert.deepEqual(readdirSync(b), ['src']);
  assert.deepEqual(readdirSync(join(b, 'src')), []);
  assert.deepEqual(readdirSync(root), ['b2-a1']);
});

test('what a build left (a file, a directory beside src, src replaced by a symlink) is removed, never kept', () => {
  const root = workRoot();
  const outside = mkdtempSync(join(tmpdir(), 'crowdbake-dirs-outside-'));
  roots.push(outside);
  writeFileSync(join(outside, 'keep-me'), 'x');
  const cases: [string, (dir: string) => void][] = [
    ['a file in src', (d) => writeFileSync(join(d, 'src', 'out.o'), 'x')],
    ['a directory beside src', (d) => mkdirSync(join(d, 'debian-out'))],
    ['src a symlink to a directory elsewhere', (d) => { rmSync(join(d, 'src'), { recursive: true }); symlinkSync(outside, join(d, 'src')); }],
  ];
  for (const [name, leave] of cases) {
    const d = join(root, `b-${name.length}`);
    makeBuildDir(root, d, true, true);
    leave(d);
    retireBuildDir(root, d, true);
    assert.equal(existsSync(d), false, name);
    assert.deepEqual(readdirSync(root), [], `${name}: nothing kept`);
  }
  // The symlink was removed, not followed.
  assert.deepEqual(readdirSync(outside), ['keep-me']);
  const fresh = join(root, 'b9-a1');
  makeBuildDir(root, fresh, true, true);
  assert.equal(lstatSync(join(fresh, 'src')).isDirectory(), true);
  assert.deepEqual(readdirSync(join(fresh, 'src')), []);
});

test('a kept pair that is no longer empty when taken (a process that outlived its build wrote to it) is removed, and the build gets new directories', () => {
  const root = workRoot();
  const a = join(root, 'b1-a1');
  makeBuildDir(root, a, true, true);
  retireBuildDir(root, a, true);
  const [spare] = readdirSync(root);
  assert.match(spare!, /^\.spare-\d+$/);
  writeFileSync(join(root, spare!, 'src', 'late'), 'written after the build ended');
  const b = join(root, 'b2-a1');
  makeBuildDir(root, b, true, true);
  assert.deepEqual(readdirSync(join(b, 'src')), [], 'the late file is not in the new build\'s src');
  assert.deepEqual(readdirSync(root), ['b2-a1']);
});

test('without reuse nothing is kept; with it, at most 8 spares a work root; a spare removed from outside is not missed', () => {
  const root = workRoot();
  const d = join(root, 'b1-a1');
  makeBuildDir(root, d, false, true);
  retireBuildDir(root, d, false);
  assert.deepEqual(readdirSync(root), []);

  const dirs = Array.from({ length: 10 }, (_, i) => join(root, `b${i + 10}-a1`));
  for (const x of dirs) makeBuildDir(root, x, true, true);
  for (const x of dirs) retireBuildDir(root, x, true);
  assert.equal(readdirSync(root).length, 8);
  assert.ok(readdirSync(root).every((n) => n.startsWith('.spare-')));

  // The agent empties its work root when it starts; a spare it removed is replaced by new directories.
  for (const n of readdirSync(root)) rmSync(join(root, n), { recursive: true });
  const e = join(root, 'b30-a1');
  assert.equal(makeBuildDir(root, e, true, true), true);
  assert.deepEqual(readdirSync(join(e, 'src')), []);
  // A directory that is already gone is not an error.
  retireBuildDir(root, join(root, 'b31-a1'), true);
});

test('withSrc false makes only the outer directory (the caller makes src inside the disk limit it mounts)', () => {
  const root = workRoot();
  const d = join(root, 'b1-a1');
  assert.equal(makeBuildDir(root, d, false, false), false);
  assert.deepEqual(readdirSync(d), []);
});

test('of the registered executors only the host executor keeps build directories: a container or VM build always gets new ones', async () => {
  const { EXECUTORS } = await import('./executors/registry.js');
  const root = workRoot();
  const keeping: string[] = [];
  for (const e of EXECUTORS) {
    const ex = await e.create({ ownerId: 'test-dirs', dataDir: root, basesDir: root, warmSandboxes: 0 });
    if (ex.keepsBuildDirs) keeping.push(e.name);
    await ex.close?.();
  }
  assert.deepEqual(keeping, ['host']);
});
