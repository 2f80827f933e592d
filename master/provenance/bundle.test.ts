import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { UNLISTED_VOLUNTEER_ID, UNLISTED_VOLUNTEER_LABEL } from '../../protocol/api.js';
import { FarmSummarySchema } from '../../protocol/provenance.js';
import { openStore } from '../store/open-store.js';
import type { VolunteerRow } from '../store/store.js';
import { Attestations } from './attestations.js';
import { provenanceBundle } from './bundle.js';
import { loadFarmKey } from './farm-key.js';
import { WorkerKeys } from './worker-keys.js';

// The bundle is public (served next to the artifact): a volunteer who asked not to be listed
// must not be named in it, by name or id — with a real SQLite store and farm key.

test('a bundle names a listed volunteer by id and name, and an unlisted one only by the public label, with an owner that links to nothing', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'crowdbake-bundle-'));
  const store = await openStore(`sqlite:${join(dir, 'db')}`);
  t.after(async () => { await store.close(); rmSync(dir, { recursive: true, force: true }); });
  const now = new Date().toISOString();
  const person = (id: string, displayName: string, listed: boolean): VolunteerRow => ({
    id, publicKey: `k-${id}`, displayName, listed, trust: 'new', trustSource: 'join', streak: 0, createdAt: now,
  });
  const join_ = (worker: string, v: VolunteerRow) => store.enroll({
    inviteId: null, at: now, volunteer: v, reason: 'joined', token: { name: worker, hash: 'h', labels: [], maxBuilds: 1, createdAt: now, revokedAt: null },
  });
  assert.equal((await join_('w-lou', person('vol-11111111', 'Listed Lou', true))).ok, true);
  assert.equal((await join_('w-sam', person('vol-22222222', 'Secret Sam', false))).ok, true);
  const built = async (worker: string) => {
    const b = await store.insertBuild({ builder: 'b', revision: null, reason: null, queuedAt: now });
    await store.updateBuild(b.id, { state: 'running', worker, attempt: 1 });
    await store.putArtifact({ buildId: b.id, name: 'out.txt', size: 1, sha256: 'a'.repeat(64), worker });
    await store.updateBuild(b.id, { state: 'finished', result: 'success', finishedAt: now });
    return b.id;
  };
  const signer = loadFarmKey(dir, 'farm');
  const deps = {
    store, attestations: new Attestations(store, dir), keys: new WorkerKeys(store, dir), signer: () => signer,
    farmUrl: () => 'http://farm', ownersOf: () => 'distinct' as const,
  };
  const attemptOf = async (id: number) => {
    const bundle = (await provenanceBundle(deps, id, 'out.txt'))!;
    const text = JSON.stringify(bundle);
    const summary = FarmSummarySchema.parse(JSON.parse(Buffer.from(bundle.summary.payload, 'base64').toString('utf8')));
    return { text, attempt: summary.predicate.crowdbake.attempts[0]! };
  };

  const lou = await attemptOf(await built('w-lou'));
  assert.deepEqual(lou.attempt.volunteer, { id: 'vol-11111111', displayName: 'Listed Lou' });
  assert.equal(lou.attempt.owner, 'volunteer:vol-11111111');

  const sam1 = await attemptOf(await built('w-sam'));
  assert.deepEqual(sam1.attempt.volunteer, { id: UNLISTED_VOLUNTEER_ID, displayName: UNLISTED_VOLUNTEER_LABEL });
  assert.match(sam1.attempt.owner, /^unlisted:[0-9a-f]{32}$/);
  for (const secret of ['Secret Sam', 'vol-22222222', '22222222']) assert.ok(!sam1.text.includes(secret), `the bundle (summary included) holds "${secret}"`);
  assert.ok(!Buffer.from(JSON.parse(sam1.text).summary.payload, 'base64').toString('utf8').includes('vol-22222222'));
  // Another group of the same volunteer: another owner, so bundles cannot be linked to each other.
  const sam2 = await attemptOf(await built('w-sam'));
  assert.match(sam2.attempt.owner, /^unlisted:[0-9a-f]{32}$/);
  assert.notEqual(sam2.attempt.owner, sam1.attempt.owner);
});
