import { test } from 'node:test';
import assert from 'node:assert/strict';
import { SqliteStore } from './store/sqlite-store.js';
import { decide, Verification, type ReplicaOutcome } from './verification.js';

const A = 'a'.repeat(64);
const B = 'b'.repeat(64);
const r = (id: number, worker: string, sha: string | null, result: ReplicaOutcome['result'] = 'success'): ReplicaOutcome =>
  ({ id, worker, result, artifacts: sha ? [{ name: 'out.tar', sha256: sha }] : [] });

test('two replicas with the same bytes are verified; nobody is flagged', () => {
  const d = decide([r(1, 'wa', A), r(2, 'wb', A)]);
  assert.deepEqual([...d.verdicts.values()].map((v) => v.verdict), ['verified', 'verified']);
  assert.deepEqual(d.flags, []);
});

test('two replicas that differ: both disagreed and both workers flagged, the detail names file and hashes', () => {
  const d = decide([r(1, 'wa', A), r(2, 'wb', B)]);
  assert.equal(d.verdicts.get(1)!.verdict, 'disagreed');
  assert.equal(d.verdicts.get(2)!.verdict, 'disagreed');
  assert.match(d.verdicts.get(1)!.detail, /none has a majority of 2: out\.tar: sha256 aaaaaaaaaaaa… vs sha256 bbbbbbbbbbbb… from build 2 on wb/);
  assert.deepEqual(d.flags.map((f) => f.worker), ['wa', 'wb']);
});

test('three replicas: the majority wins, only the odd one out is flagged', () => {
  const d = decide([r(1, 'wa', A), r(2, 'wb', B), r(3, 'wc', A)]);
  assert.deepEqual([1, 2, 3].map((id) => d.verdicts.get(id)!.verdict), ['verified', 'disagreed', 'verified']);
  assert.deepEqual(d.flags.map((f) => [f.worker, f.buildId]), [['wb', 2]]);
  assert.match(d.flags[0]!.reason, /differ from the majority's \(2 of 3\)/);
});

test('a failed replica does not vote; one success out of two decides nothing', () => {
  const d = decide([r(1, 'wa', A), r(2, 'wb', null, 'failure')]);
  assert.equal(d.verdicts.get(1)!.verdict, 'unverified');
  assert.match(d.verdicts.get(1)!.detail, /only 1 of 2 replicas succeeded/);
  assert.equal(d.verdicts.get(2)!.verdict, 'unverified');
  assert.deepEqual(d.flags, []);
});

test('a missing artifact is a difference too', () => {
  const d = decide([r(1, 'wa', A), r(2, 'wb', null), r(3, 'wc', A)]);
  assert.equal(d.verdicts.get(2)!.verdict, 'disagreed');
  assert.match(d.verdicts.get(2)!.detail, /out\.tar: missing vs sha256 aaaa/);
});

test('owners: the owners of the other replicas are excluded, from memory and after a restart (from the tokens)', async () => {
  const store = new SqliteStore(':memory:');
  try {
    await store.createToken({ name: 'a1', hash: 'h', labels: [], maxBuilds: 1, createdAt: 't', revokedAt: null, volunteerId: 'va' });
    const v = new Verification(store);
    const [g, r2, r3] = await v.createGroup({ builder: 'b', revision: null, reason: null, queuedAt: 't' }, 3);
    assert.deepEqual([...v.excludedOwners(g!.id)!], []);
    v.assigned(g!.id, 'a1', 'volunteer:va');
    assert.deepEqual([...v.excludedOwners(r2!.id)!], ['volunteer:va']);
    assert.deepEqual([...v.excluded(r2!.id)!], ['a1']);
    assert.deepEqual([...v.excludedOwners(g!.id)!], [], 'a replica does not exclude its own owner');
    v.assigned(g!.id, null);
    assert.deepEqual([...v.excludedOwners(r2!.id)!], [], 'a requeued replica frees its owner');
    assert.equal(v.excludedOwners(9999), undefined);
    // After a restart the owner comes from the worker's token.
    v.assigned(g!.id, 'a1', 'volunteer:va');
    await store.updateBuild(g!.id, { state: 'running', worker: 'a1' });
    await store.updateBuild(r3!.id, { state: 'running', worker: 'maint' });
    const reloaded = new Verification(store);
    await reloaded.load();
    assert.deepEqual([...reloaded.excludedOwners(r2!.id)!].sort(), ['token:maint', 'volunteer:va']);
  } finally {
    await store.close();
  }
});
