// A build's directories: an empty pair may pass to the next build (renamed, the same inodes),
// anything a build left, or replaced, is removed instead; and the runner does it only for an
// executor that says so (the host executor), never for a sandbox.
import assert from 'node:assert/strict';
import { chmodSync, existsSync, lstatSync, mkdirSync, mkdtempSync, readdirSync, renameSync, rmSync, statSync, symlinkSync, writeFileSync } from 'node:fs';
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
  const made = makeBuildDir(root, a, true, true);
  assert.equal(made.hasSrc, true);
  const ino = [statSync(a).ino, statSync(join(a, 'src')).ino];
  retireBuildDir(root, a, made);
  assert.equal(existsSync(a), false);
  const b = join(root, 'b2-a1');
  assert.equal(makeBuildDir(root, b, true, true).hasSrc, true);
  assert.deepEqual([statSync(b).ino, statSync(join(b, 'src')).ino], ino);
  assert.deepEqual(readdirSync(b), ['src']);
  assert.deepEqual(readdirSync(join(b, 'src')), []);
  assert.deepEqual(readdirSync(root), ['b2-a1']);
});

test('what a build left or changed (a file, a directory beside src, src or the directory itself a symlink, a chmod, a setgid bit) is removed, never kept', () => {
  const root = workRoot();
  // Empty elsewhere, as a kept src would be: only lstat tells the symlink from the real thing.
  const outside = mkdtempSync(join(tmpdir(), 'crowdbake-dirs-outside-'));
  roots.push(outside);
  const outsidePair = mkdtempSync(join(tmpdir(), 'crowdbake-dirs-outside-pair-'));
  roots.push(outsidePair);
  mkdirSync(join(outsidePair, 'src'));
  const cases: [string, (dir: string) => void][] = [
    ['a file in src', (d) => writeFileSync(join(d, 'src', 'out.o'), 'x')],
    ['a directory beside src', (d) => mkdirSync(join(d, 'debian-out'))],
    ['src a symlink to an empty directory elsewhere', (d) => { rmSync(join(d, 'src'), { recursive: true }); symlinkSync(outside, join(d, 'src')); }],
    ['the directory a symlink to an empty pair elsewhere', (d) => { rmSync(d, { recursive: true }); symlinkSync(outsidePair, d); }],
    ['src made read-only', (d) => chmodSync(join(d, 'src'), 0o555)],
    ['the directory given the setgid bit', (d) => chmodSync(d, statSync(d).mode | 0o2000)],
  ];
  for (const [i, [name, leave]] of cases.entries()) {
    const d = join(root, `b${i + 1}-a1`);
    const made = makeBuildDir(root, d, true, true);
    leave(d);
    retireBuildDir(root, d, made);
    assert.equal(existsSync(d) || lstatSync(d, { throwIfNoEntry: false }) !== undefined, false, name);
    assert.deepEqual(readdirSync(root), [], `${name}: nothing kept`);
  }
  // The symlinks were removed, not followed.
  assert.deepEqual(readdirSync(outside), []);
  assert.deepEqual(readdirSync(outsidePair), ['src']);
  const fresh = join(root, 'b9-a1');
  makeBuildDir(root, fresh, true, true);
  assert.equal(lstatSync(join(fresh, 'src')).isDirectory(), true);
  assert.deepEqual(readdirSync(join(fresh, 'src')), []);
});

test('a kept pair that is no longer empty when taken (a process that outlived its build wrote to it) is removed, and the build gets new directories', () => {
  const root = workRoot();
  const a = join(root, 'b1-a1');
  retireBuildDir(root, a, makeBuildDir(root, a, true, true));
  const [spare] = readdirSync(root);
  assert.match(spare!, /^\.spare-\d+$/);
  writeFileSync(join(root, spare!, 'src', 'late'), 'written after the build ended');
  const b = join(root, 'b2-a1');
  makeBuildDir(root, b, true, true);
  assert.deepEqual(readdirSync(join(b, 'src')), [], 'the late file is not in the new build\'s src');
  assert.deepEqual(readdirSync(root), ['b2-a1']);
});

test('not given what was made, nothing is kept; given it, at most 8 spares a work root; a spare removed from outside is not missed', () => {
  const root = workRoot();
  const d = join(root, 'b1-a1');
  // Not given what was made (runner.ts decides: an executor that does not keep them, runner-dirs.test.ts, or a disk-limited build): removed.
  makeBuildDir(root, d, false, true);
  retireBuildDir(root, d);
  assert.deepEqual(readdirSync(root), []);

  const dirs = Array.from({ length: 10 }, (_, i) => join(root, `b${i + 10}-a1`));
  const made = dirs.map((x) => makeBuildDir(root, x, true, true));
  dirs.forEach((x, i) => retireBuildDir(root, x, made[i]));
  assert.equal(readdirSync(root).length, 8);
  assert.ok(readdirSync(root).every((n) => n.startsWith('.spare-')));

  // The agent empties its work root when it starts; a spare it removed is replaced by new directories.
  for (const n of readdirSync(root)) rmSync(join(root, n), { recursive: true });
  const e = join(root, 'b30-a1');
  assert.equal(makeBuildDir(root, e, true, true).hasSrc, true);
  assert.deepEqual(readdirSync(join(e, 'src')), []);
  // A directory that is already gone is not an error.
  retireBuildDir(root, join(root, 'b31-a1'));
});

test('withSrc false makes only the outer directory, a new one even when a spare is ready (the test-install directory, or a disk limit mounted first)', () => {
  const root = workRoot();
  const a = join(root, 'b1-a1');
  retireBuildDir(root, a, makeBuildDir(root, a, true, true));
  assert.equal(readdirSync(root).length, 1, 'a spare is ready');
  const d = join(root, 'b1-a1-install');
  assert.equal(makeBuildDir(root, d, true, false).hasSrc, false);
  assert.deepEqual(readdirSync(d), []);
  assert.equal(readdirSync(root).length, 2, 'the spare is still there');
});

test('only the directory the build was given is kept: not another of the same name made meanwhile, nor one retired without what was made', () => {
  const root = workRoot();
  const d = join(root, 'b1-a1');
  const made = makeBuildDir(root, d, true, true);
  // Another run removed it and made its own of that name (the same inode number may come back: a file holds on to the first).
  writeFileSync(join(root, 'hold'), '');
  renameSync(d, join(root, 'hold-dir'));
  mkdirSync(join(d, 'src'), { recursive: true });
  retireBuildDir(root, d, made);
  assert.equal(existsSync(d), false);
  assert.deepEqual(readdirSync(root).sort(), ['hold', 'hold-dir'], 'removed, not kept');
  const e = join(root, 'b2-a1');
  makeBuildDir(root, e, true, true);
  retireBuildDir(root, e);
  assert.deepEqual(readdirSync(root).sort(), ['hold', 'hold-dir']);
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
