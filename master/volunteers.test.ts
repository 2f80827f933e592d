import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { UNLISTED_VOLUNTEER_LABEL } from '../protocol/api.js';
import { openStore } from './store/open-store.js';
import { Volunteers } from './volunteers.js';

test('a reliable volunteer\'s public name (what a dropped replica\'s build message says) is the public label when they asked not to be listed', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'crowdbake-volunteers-'));
  const store = await openStore(`sqlite:${join(dir, 'db')}`);
  t.after(async () => { await store.close(); rmSync(dir, { recursive: true, force: true }); });
  const now = new Date().toISOString();
  for (const [id, displayName, listed] of [['vol-1', 'Listed Lou', true], ['vol-2', 'Secret Sam', false]] as const) {
    await store.enroll({
      inviteId: null, at: now, reason: 'joined', token: { name: `w-${id}`, hash: 'h', labels: [], maxBuilds: 1, createdAt: now, revokedAt: null },
      volunteer: { id, publicKey: `k-${id}`, displayName, listed, trust: 'new', trustSource: 'join', streak: 0, createdAt: now },
    });
    await store.setStreak(id, 5);
  }
  const v = new Volunteers(store, { promoteAfter: 0, fewerReplicasAfter: 2 });
  await v.load();
  assert.deepEqual(v.reliable('volunteer:vol-1'), { id: 'vol-1', displayName: 'Listed Lou', publicName: 'Listed Lou', streak: 5 });
  assert.deepEqual(v.reliable('volunteer:vol-2'), { id: 'vol-2', displayName: 'Secret Sam', publicName: UNLISTED_VOLUNTEER_LABEL, streak: 5 });
});
