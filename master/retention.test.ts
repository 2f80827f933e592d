import { test } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, mkdirSync, mkdtempSync, rmSync, utimesSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { openStore } from './store/open-store.js';
import { LogStore } from './log-store.js';
import { pruneOldPlainLogs, pruneUnlistedArtifacts, removeSpentCredentials, SPENT_CREDENTIAL_GRACE_MS, sweep } from './retention.js';

test('retention removes finished logs and artifacts older than the policy, nothing else', () => {
  const d = mkdtempSync(join(tmpdir(), 'crowdbake-retention-'));
  try {
    mkdirSync(join(d, 'logs'));
    mkdirSync(join(d, 'artifacts', '1'), { recursive: true });
    mkdirSync(join(d, 'artifacts', '2'), { recursive: true });
    for (const f of ['logs/1.log.gz', 'logs/2.log.gz', 'logs/3.log', 'artifacts/1/a.tar', 'artifacts/2/b.tar']) writeFileSync(join(d, f), 'x');
    const old = new Date(Date.now() - 10 * 86_400_000);
    for (const f of ['logs/1.log.gz', 'logs/3.log', 'artifacts/1']) utimesSync(join(d, f), old, old);
    assert.deepEqual(sweep(d, { logsMs: 86_400_000, artifactsMs: 86_400_000 }), { logs: 1, artifacts: 1 });
    assert.equal(existsSync(join(d, 'logs/1.log.gz')), false);
    assert.equal(existsSync(join(d, 'logs/2.log.gz')), true);
    assert.equal(existsSync(join(d, 'logs/3.log')), true, 'a plain .log belongs to a build still running');
    assert.equal(existsSync(join(d, 'artifacts/1')), false);
    assert.equal(existsSync(join(d, 'artifacts/2/b.tar')), true);
    assert.deepEqual(sweep(d, { logsMs: null, artifactsMs: null }), { logs: 0, artifacts: 0 });

    // With the log store: a short log (rows, no file) of a build that ended 10 days ago goes, one that runs stays.
    const logs = new LogStore(d, false);
    logs.append(11, 'ended long ago\n');
    logs.finish(11, Date.now() - 10 * 86_400_000);
    logs.append(12, 'running\n');
    assert.deepEqual(sweep(d, { logsMs: 86_400_000, artifactsMs: null }, Date.now(), logs), { logs: 1, artifacts: 0 });
    assert.equal(logs.read(11), null);
    assert.notEqual(logs.read(12), null);
    logs.closeAll();

    // An old .gz whose build's head is still rows (its end not noted: the disk was full) is not cut off from its head.
    writeFileSync(join(d, 'logs/13.log.gz'), 'x');
    utimesSync(join(d, 'logs/13.log.gz'), old, old);
    const held = { removeEndedBefore: () => 0, hasRows: (id: number) => id === 13, busy: () => false };
    assert.deepEqual(sweep(d, { logsMs: 86_400_000, artifactsMs: null }, Date.now(), held), { logs: 0, artifacts: 0 });
    assert.equal(existsSync(join(d, 'logs/13.log.gz')), true);

    // The log database refusing (a full disk) does not keep the files from going.
    mkdirSync(join(d, 'artifacts', '3'));
    utimesSync(join(d, 'artifacts', '3'), old, old);
    const refusing = { removeEndedBefore: () => { throw new Error('database or disk is full'); }, hasRows: () => false, busy: () => false };
    assert.deepEqual(sweep(d, { logsMs: 86_400_000, artifactsMs: 86_400_000 }, Date.now(), refusing), { logs: 1, artifacts: 1 });
    assert.equal(existsSync(join(d, 'logs/13.log.gz')), false);
  } finally {
    rmSync(d, { recursive: true, force: true });
  }
});

test('the artifact files of a requeued attempt go once the build is finished; the accepted attempt\'s stay; a running build is left alone', async (t) => {
  const d = mkdtempSync(join(tmpdir(), 'crowdbake-retention-'));
  const store = await openStore(`sqlite:${join(d, 'db')}`);
  t.after(async () => { await store.close(); rmSync(d, { recursive: true, force: true }); });
  const done = await store.insertBuild({ builder: 'b', revision: null, reason: null, queuedAt: new Date().toISOString() });
  const running = await store.insertBuild({ builder: 'b', revision: null, reason: null, queuedAt: new Date().toISOString() });
  const put = async (id: number, name: string) => {
    mkdirSync(join(d, 'artifacts', String(id), 'sub'), { recursive: true });
    writeFileSync(join(d, 'artifacts', String(id), name), name);
    await store.putArtifact({ buildId: id, name, size: 1, sha256: 'a'.repeat(64), worker: 'w' });
  };
  await store.updateBuild(done.id, { state: 'running', attempt: 1 });
  await put(done.id, 'planted.bin');
  await put(done.id, 'sub/also-planted.bin');
  await store.updateBuild(done.id, { state: 'queued' });
  await store.updateBuild(done.id, { state: 'running', attempt: 2 });
  await put(done.id, 'out.bin');
  await store.updateBuild(running.id, { state: 'running', attempt: 1 });
  mkdirSync(join(d, 'artifacts', String(running.id)), { recursive: true });
  writeFileSync(join(d, 'artifacts', String(running.id), 'uploading.bin.partial'), 'x');
  assert.equal(await pruneUnlistedArtifacts(d, store), 0, 'nothing while the build runs');
  await store.updateBuild(done.id, { state: 'finished', result: 'success' });
  assert.equal(await pruneUnlistedArtifacts(d, store), 2);
  assert.equal(existsSync(join(d, 'artifacts', String(done.id), 'planted.bin')), false);
  assert.equal(existsSync(join(d, 'artifacts', String(done.id), 'sub', 'also-planted.bin')), false);
  assert.equal(existsSync(join(d, 'artifacts', String(done.id), 'out.bin')), true);
  assert.equal(existsSync(join(d, 'artifacts', String(running.id), 'uploading.bin.partial')), true);
});

test('spent one-time credentials go: expired unused, or used past the grace by a worker not connected; a connected one, a fresh one and every other token stay', async (t) => {
  const d = mkdtempSync(join(tmpdir(), 'crowdbake-retention-'));
  const store = await openStore(`sqlite:${join(d, 'db')}`);
  t.after(async () => { await store.close(); rmSync(d, { recursive: true, force: true }); });
  const now = Date.parse('2026-06-01T12:00:00.000Z');
  const iso = (ms: number) => new Date(now + ms).toISOString();
  const base = { hash: 'h', labels: [], maxBuilds: 1, createdAt: iso(-86_400_000), revokedAt: null };
  await store.createToken({ ...base, name: 'expired-unused', oneTime: true, expiresAt: iso(-1) });
  await store.createToken({ ...base, name: 'valid-unused', oneTime: true, expiresAt: iso(60_000) });
  await store.createToken({ ...base, name: 'used-long-ago', oneTime: true, expiresAt: iso(60_000) });
  await store.createToken({ ...base, name: 'used-connected', oneTime: true, expiresAt: iso(60_000) });
  await store.createToken({ ...base, name: 'used-just-now', oneTime: true, expiresAt: iso(60_000) });
  await store.createToken({ ...base, name: 'volunteer' });
  for (const [n, at] of [['used-long-ago', -SPENT_CREDENTIAL_GRACE_MS - 1], ['used-connected', -86_000_000], ['used-just-now', -1000]] as const) {
    assert.equal(await store.useOneTimeToken(n, iso(at)), true);
  }
  assert.equal(await removeSpentCredentials(store, (n) => n === 'used-connected', now), 2);
  assert.deepEqual((await store.listTokens()).map((x) => x.name).sort(), ['used-connected', 'used-just-now', 'valid-unused', 'volunteer']);
  assert.equal(await store.deleteOneTimeTokens(['volunteer']), 0, 'the store never deletes a regular token this way');
  assert.equal(await removeSpentCredentials(store, () => false, now + SPENT_CREDENTIAL_GRACE_MS + 60_001), 3);
  assert.deepEqual((await store.listTokens()).map((x) => x.name), ['volunteer']);
});

test('old plain logs that no log end names (kept before the log database) go once the store says their build finished; a running, fresh, open or rows-holding one stays', async (t) => {
  const d = mkdtempSync(join(tmpdir(), 'crowdbake-retention-'));
  const store = await openStore(`sqlite:${join(d, 'db')}`);
  mkdirSync(join(d, 'logs'));
  const logs = new LogStore(d, false);
  t.after(async () => { logs.closeAll(); await store.close(); rmSync(d, { recursive: true, force: true }); });
  const build = async (state: 'finished' | 'running') => {
    const b = await store.insertBuild({ builder: 'b', revision: null, reason: null, queuedAt: new Date().toISOString() });
    await store.updateBuild(b.id, state === 'finished' ? { state, result: 'success' } : { state, attempt: 1 });
    return b.id;
  };
  const finished = await build('finished');
  const running = await build('running');
  const fresh = await build('finished');
  const withRows = await build('finished');
  const open = await build('running');
  const unknown = 9999;
  const old = new Date(Date.now() - 10 * 86_400_000);
  const file = (id: number) => join(d, 'logs', `${id}.log`);
  // A log of more than its rows' 64 KiB: the rest is the open file.
  logs.append(open, Buffer.alloc(70 * 1024, 'y'));
  logs.append(withRows, 'head in rows\n');
  for (const id of [finished, running, fresh, withRows, unknown]) writeFileSync(file(id), 'a pre-upgrade short log\n');
  for (const id of [finished, running, withRows, open, unknown]) utimesSync(file(id), old, old);
  const cutoff = Date.now() - 86_400_000;
  assert.equal(await pruneOldPlainLogs(d, store, logs, cutoff), 2);
  assert.deepEqual([finished, running, fresh, withRows, open, unknown].map((id) => existsSync(file(id))), [false, true, true, true, true, false]);
  // Nothing more the second time.
  assert.equal(await pruneOldPlainLogs(d, store, logs, cutoff), 0);
});
