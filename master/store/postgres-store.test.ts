import { after, test } from 'node:test';
import assert from 'node:assert/strict';
import { freePort } from '../../test/helpers/ports.js';
import { MIGRATIONS } from './migrations.js';
import { openStore } from './open-store.js';
import { PostgresStore } from './postgres-store.js';
import { NO_TEST_POSTGRES, TEST_POSTGRES_ENV, TestDatabases, withDatabase } from './postgres-test-db.js';
import { storeSuite } from './store-suite.js';

const adminUrl = process.env[TEST_POSTGRES_ENV];

if (!adminUrl) {
  // Not a skip: CI starts the server (scripts/start-postgres.sh), and a developer should too.
  test('PostgreSQL store: a server to test against', () => assert.fail(NO_TEST_POSTGRES));
} else {
  const dbs = new TestDatabases(adminUrl);
  after(() => dbs.dropAll());

  storeSuite('PostgreSQL', () => dbs.storage());

  test('PostgreSQL: masters starting at once on a new database migrate it once, one after the other', async () => {
    const url = await dbs.create();
    const stores = await Promise.all(Array.from({ length: 6 }, () => PostgresStore.open(url)));
    try {
      const ids = await Promise.all(stores.map((s) => s.insertBuild({ builder: 'x', revision: null, reason: null, queuedAt: 't' })));
      assert.equal(new Set(ids.map((b) => b.id)).size, stores.length);
    } finally {
      await Promise.all(stores.map((s) => s.close()));
    }
    assert.deepEqual(await dbs.sql(url, 'SELECT version FROM schema_version'), [{ version: MIGRATIONS.length }]);
  });

  test('PostgreSQL: openStore takes postgres:// and postgresql:// URLs', async () => {
    const url = await dbs.create();
    for (const u of [url, url.replace(/^postgres:/, 'postgresql:')]) {
      const s = await openStore(u);
      assert.ok(s instanceof PostgresStore);
      await s.close();
    }
  });

  test('PostgreSQL: connection errors name the server and database and say why, never the password', async () => {
    const port = await freePort();
    const refused = `postgres://someone:sekret@127.0.0.1:${port}/farm`;
    await assert.rejects(PostgresStore.open(refused), (e: Error) => {
      assert.match(e.message, new RegExp(`database "farm" on 127\\.0\\.0\\.1:${port} as user "someone".*connection refused`));
      assert.doesNotMatch(e.message, /sekret/);
      return true;
    });
    await assert.rejects(PostgresStore.open(withDatabase(adminUrl, 'crowdbake_no_such_db')), /the database "crowdbake_no_such_db" does not exist/);
    const wrong = adminUrl.replace(/^(postgres(?:ql)?:\/\/[^:/@]+):[^@/]*@/, '$1:sekret-but-wrong@');
    if (wrong !== adminUrl) {
      await assert.rejects(PostgresStore.open(wrong), (e: Error) => {
        assert.match(e.message, /authentication failed/);
        assert.doesNotMatch(e.message, /sekret/);
        return true;
      });
    }
  });

  test('PostgreSQL: a lost connection is replaced at the next call, and said so without the password', async () => {
    const url = await dbs.create();
    const said: string[] = [];
    const s = await PostgresStore.open(url, { log: (m) => said.push(m) });
    try {
      const a = await s.insertBuild({ builder: 'x', revision: null, reason: null, queuedAt: 't' });
      const [{ n }] = await dbs.sql<{ n: number }>(url,
        `SELECT count(pg_terminate_backend(pid))::int AS n FROM pg_stat_activity WHERE datname = current_database() AND application_name = 'crowdbake'`) as [{ n: number }];
      assert.equal(n, 1);
      const deadline = Date.now() + 5000;
      while (said.length === 0 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 10));
      assert.match(said[0] ?? '(nothing logged)', /lost the connection to the PostgreSQL store .*reconnecting/);
      assert.doesNotMatch(said[0]!, /crowdbake:crowdbake@/);
      assert.equal((await s.getBuild(a.id))?.builder, 'x');
      await s.updateBuild(a.id, { state: 'running' });
      assert.equal((await s.getBuild(a.id))?.state, 'running');
    } finally {
      await s.close();
    }
  });

  test('PostgreSQL: a closed store refuses new calls but finishes those made before close', async () => {
    const s = await PostgresStore.open(await dbs.create());
    const a = s.insertBuild({ builder: 'x', revision: null, reason: null, queuedAt: 't' });
    const closed = s.close();
    await assert.rejects(s.listBuilds({ limit: 1 }), /the PostgreSQL store is closed/);
    assert.equal((await a).builder, 'x');
    await closed;
  });

  test('PostgreSQL: two masters enrolling the same worker name at once: one joins, the other is told name-taken; one invite use is spent per join', async () => {
    const url = await dbs.create();
    const stores = await Promise.all(Array.from({ length: 4 }, () => PostgresStore.open(url)));
    try {
      await stores[0]!.createInvite({ id: 'i', codeHash: 'c', labels: [], maxBuilds: 1, maxUses: 10, usesLeft: 10, expiresAt: null, note: '', createdAt: 't', revokedAt: null });
      const outs = await Promise.all(stores.map((s, k) => s.enroll({
        inviteId: 'i', at: 't', reason: 'joined',
        volunteer: { id: `v${k}`, publicKey: `key${k}`, displayName: 'V', listed: true, trust: 'new', trustSource: 'join', streak: 0, createdAt: 't' },
        token: { name: 'same', hash: `h${k}`, labels: [], maxBuilds: 1, createdAt: 't', revokedAt: null },
      })));
      assert.equal(outs.filter((o) => o.ok).length, 1);
      assert.deepEqual(outs.filter((o) => !o.ok), Array.from({ length: 3 }, () => ({ ok: false, reason: 'name-taken' })));
      assert.equal((await stores[0]!.getInviteByCodeHash('c'))?.usesLeft, 9);
      assert.equal((await stores[0]!.listVolunteers()).length, 1);
    } finally {
      await Promise.all(stores.map((s) => s.close()));
    }
  });
}

