import { test } from 'node:test';
import assert from 'node:assert/strict';
import { PostgresStore } from './postgres-store.js';
import { NO_TEST_POSTGRES, TEST_POSTGRES_ENV, TestDatabases } from './postgres-test-db.js';

// Webhook replay protection shared by several masters (postgres-webhooks.ts): two stores
// standing for two masters behind one load balancer, on one real database.
const server = process.env[TEST_POSTGRES_ENV];
const skip = server ? false : NO_TEST_POSTGRES;
const push = (after: string) => ({ repoUrls: ['https://forge.example/p/repo.git', 'git@forge.example:p/repo.git'], ref: 'refs/heads/main', after });

test('webhooks on two masters: a delivery sent to both at once is taken once; a retry or an old head reaching the other master is refused', { skip }, async (t) => {
  const dbs = new TestDatabases(server!);
  const url = await dbs.create();
  const a = await PostgresStore.open(url);
  const b = await PostgresStore.open(url);
  t.after(async () => { await a.close(); await b.close(); await dbs.dropAll(); });

  for (let i = 0; i < 20; i++) {
    const id = `github:delivery-${i}`;
    const [ra, rb] = await Promise.all([a.webhooks.check(id, push(`${i}`.padStart(40, 'a'))), b.webhooks.check(id, push(`${i}`.padStart(40, 'a')))]);
    assert.equal([ra, rb].filter((r) => r === null).length, 1, `delivery ${i}: one master takes it`);
    assert.match((ra ?? rb)!, new RegExp(`delivery delivery-${i} was already seen`));
  }
  // A retry of an old delivery at the other master.
  assert.match((await b.webhooks.check('github:delivery-3', push('f'.repeat(40))))!, /already seen/);
  // A captured old push under a fresh delivery id: its head was the branch's before the newest.
  assert.match((await b.webhooks.check('github:fresh', push('3'.padStart(40, 'a'))))!, /refs\/heads\/main was already at a+3 before its newest head a+19: an old push is not rebuilt/);
  // The newest head again (a re-delivery the forge made under a new id) is not a replay; a new head is fine.
  assert.equal(await a.webhooks.check('github:again', push('19'.padStart(40, 'a'))), null);
  assert.equal(await a.webhooks.check(null, push('b'.repeat(40))), null);
  assert.match((await b.webhooks.check(null, push('19'.padStart(40, 'a'))))!, /old push is not rebuilt/);
});
