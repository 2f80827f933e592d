import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { closeSync, mkdirSync, openSync, rmSync, writeSync } from 'node:fs';
import Database from 'better-sqlite3';
import { join } from 'node:path';
import type { BuildView } from '../protocol/api.js';
import { SqliteStore } from '../master/store/sqlite-store.js';
import { startWorker } from '../worker/agent.js';
import { cleanup, tempDir, testMaster, until } from './helpers/cluster.js';

// Fault suite: the master's data directory, then the worker's, on a small tmpfs that fills
// up. Whatever is refused must be refused with an error that says the disk is full; nothing
// stored before is damaged; once space is freed, builds run again. Needs root (mount).

const BUILDER = `
requires: { executor: host }
steps:
  - run: for i in $(seq 1 20); do echo "line $i of build $CROWDBAKE_BUILD_ID"; sleep 0.05; done; head -c 20000 /dev/zero > out.bin
artifacts: [out.bin]
`;

/** A tmpfs of `size` at `dir`, unmounted when the test ends (after hooks run in the order they were added). */
function smallDisk(t: { after: (fn: () => void) => void }, dir: string, size: string): void {
  mkdirSync(dir, { recursive: true });
  execFileSync('mount', ['-t', 'tmpfs', '-o', `size=${size}`, 'tmpfs', dir]);
  t.after(() => { execFileSync('umount', ['-l', dir]); });
}

/** Fills the filesystem holding `dir` with one file (returned, to free it later). */
function fill(dir: string): string {
  const file = join(dir, 'filler');
  const fd = openSync(file, 'w');
  const block = Buffer.alloc(64 * 1024, 1);
  try {
    for (;;) writeSync(fd, block);
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code !== 'ENOSPC') throw e;
    // Squeeze out the last bytes too.
    try { for (;;) writeSync(fd, block.subarray(0, 512)); } catch { /* full */ }
  } finally {
    closeSync(fd);
  }
  return file;
}

const post = (url: string, admin: string) => fetch(`${url}/api/v1/builders/b/builds`, { method: 'POST', headers: { authorization: `Bearer ${admin}` } });
const sha256 = (b: Buffer) => createHash('sha256').update(b).digest('hex');

test('fault: the master\'s disk fills up: clear errors, nothing stored is damaged, builds run again once space is freed', async (t) => {
  const started = Date.now();
  const dir = tempDir('mfull');
  const wdir = tempDir('wfull');
  smallDisk(t, join(dir, 'data'), '6m');
  t.after(() => cleanup(dir, wdir));
  const m = await testMaster({ b: BUILDER }, { dir });
  t.after(() => m.close());
  const w = await startWorker({ preferences: { when: 'always' }, idleSource: 'none', master: m.url, token: await m.token('w1'), dataDir: wdir, executor: 'host', labels: [], log: () => undefined });
  t.after(() => w.close());
  const logOf = (id: number) => fetch(`${m.url}/api/v1/builds/${id}/log`).then((r) => r.text());
  const first = await m.waitFinished(await m.force('b'), 30_000);
  assert.equal(first.result, 'success');
  const firstLog = await logOf(first.id);
  const firstArtifact = Buffer.from(await (await fetch(`${m.url}/api/v1/builds/${first.id}/artifacts/out.bin`)).arrayBuffer());

  // The disk fills while a build runs.
  const running = await m.force('b');
  await until('the build to print', async () => (await logOf(running)).includes('line 3 '));
  const filler = fill(join(dir, 'data'));
  const refused = await post(m.url, m.adminToken);
  assert.equal(refused.status, 507);
  // Either the free-space check or the store's own SQLITE_FULL says it.
  assert.match(((await refused.json()) as { error: string }).error, /^the master's disk is full/);
  const stopped = await m.waitFinished(running, 30_000);
  assert.equal(stopped.result, 'error');
  assert.match(stopped.message ?? '', /^the master's disk is full \((ENOSPC|database or disk is full).*\); the build was stopped$/);

  // Space comes back: the stopped build's end reaches the store, new builds run.
  rmSync(filler);
  await until('the stopped build to be stored as ended', async () => (await m.get<BuildView>(`/api/v1/builds/${running}`)).state === 'finished', 10_000);
  const next = await m.waitFinished(await m.force('b'), 30_000);
  assert.equal(next.result, 'success', await logOf(next.id));
  assert.equal(await logOf(first.id), firstLog, 'the earlier log is intact');
  const again = Buffer.from(await (await fetch(`${m.url}/api/v1/builds/${first.id}/artifacts/out.bin`)).arrayBuffer());
  assert.equal(sha256(again), sha256(firstArtifact), 'the earlier artifact is intact');
  await w.close();
  await m.close();

  const store = new SqliteStore(join(dir, 'data', 'crowdbake.db'));
  try {
    const rows = await store.listBuilds({ limit: 10 });
    assert.deepEqual(rows.map((b) => [b.id, b.state, b.result]).reverse(), [[first.id, 'finished', 'success'], [running, 'finished', 'error'], [next.id, 'finished', 'success']]);
    assert.match(rows.find((b) => b.id === running)!.message ?? '', /master's disk is full/);
  } finally {
    await store.close();
  }
  const check = new Database(join(dir, 'data', 'crowdbake.db'), { readonly: true });
  assert.equal(check.pragma('integrity_check', { simple: true }), 'ok');
  check.close();
  console.log(`fault-disk-full (master): 507 while full, running build stopped with "${stopped.message}", recovered; ${((Date.now() - started) / 1000).toFixed(1)} s`);
});

test('fault: the worker\'s disk fills up: the build fails saying so, the worker stays up and builds again once space is freed', async (t) => {
  const started = Date.now();
  const wdir = tempDir('wfull');
  smallDisk(t, join(wdir, 'data'), '4m');
  t.after(() => cleanup(wdir));
  const m = await testMaster({ b: BUILDER });
  t.after(() => m.close());
  const lines: string[] = [];
  const w = await startWorker({ preferences: { when: 'always' }, idleSource: 'none', master: m.url, token: await m.token('w2'), dataDir: join(wdir, 'data'), executor: 'host', labels: [], log: (l) => lines.push(l) });
  t.after(() => w.close());
  assert.equal((await m.waitFinished(await m.force('b'), 30_000)).result, 'success');
  const filler = fill(join(wdir, 'data'));
  const full = await m.waitFinished(await m.force('b'), 30_000);
  const log = await (await fetch(`${m.url}/api/v1/builds/${full.id}/log`)).text();
  assert.notEqual(full.result, 'success');
  assert.match(`${full.message}\n${log}`, /No space left on device|disk is full/, log);
  rmSync(filler);
  const next = await m.waitFinished(await m.force('b'), 30_000);
  assert.deepEqual([next.result, next.worker], ['success', 'w2']);
  console.log(`fault-disk-full (worker): build failed with "${full.message}"; log says ${/No space left on device/.test(log) ? '"No space left on device"' : 'nothing'}; recovered; ${((Date.now() - started) / 1000).toFixed(1)} s`);
});
