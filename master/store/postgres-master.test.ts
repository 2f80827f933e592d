import { after, test } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { BuildView } from '../../protocol/api.js';
import { startMaster, type MasterHandle } from '../master.js';
import { NO_TEST_POSTGRES, TEST_POSTGRES_ENV, TestDatabases } from './postgres-test-db.js';

const adminUrl = process.env[TEST_POSTGRES_ENV];

if (!adminUrl) {
  test('master on PostgreSQL: a server to test against', () => assert.fail(NO_TEST_POSTGRES));
} else {
  const dbs = new TestDatabases(adminUrl);
  after(() => dbs.dropAll());

  test('master on PostgreSQL: a forced build is still queued after the master restarts', async (t) => {
    const dir = mkdtempSync(join(tmpdir(), 'crowdbake-pg-master-'));
    t.after(() => rmSync(dir, { recursive: true, force: true }));
    const configDir = join(dir, 'config');
    const dataDir = join(dir, 'data');
    mkdirSync(join(configDir, 'builders'), { recursive: true });
    writeFileSync(join(configDir, 'builders', 'hello.yml'), 'requires: { executor: host }\nsteps:\n  - run: echo hello\n');
    const storeUrl = await dbs.create();
    const start = () => startMaster({ configDir, dataDir, storeUrl, host: '127.0.0.1', port: 0, watch: false, staticDir: null });
    const get = async <T>(m: MasterHandle, path: string): Promise<T> => {
      const r = await fetch(`${m.url}${path}`);
      assert.equal(r.status, 200, `GET ${path}`);
      return (await r.json()) as T;
    };

    const first = await start();
    let id: number;
    try {
      const r = await fetch(`${first.url}/api/v1/builders/hello/builds`, {
        method: 'POST', headers: { authorization: `Bearer ${first.adminToken}`, 'content-type': 'application/json' },
        body: JSON.stringify({ reason: 'pg test' }),
      });
      assert.equal(r.status, 201);
      id = ((await r.json()) as { id: number }).id;
      assert.equal((await get<BuildView>(first, `/api/v1/builds/${id}`)).state, 'queued');
    } finally {
      await first.close();
    }
    // The row is in PostgreSQL, and nothing went to a SQLite file.
    assert.deepEqual(await dbs.sql(storeUrl, 'SELECT builder, state, reason FROM builds WHERE id = $1', [id]), [{ builder: 'hello', state: 'queued', reason: 'pg test' }]);
    assert.equal(existsSync(join(dataDir, 'crowdbake.db')), false);

    const second = await start();
    try {
      const queued = await get<BuildView[]>(second, '/api/v1/builds?state=queued');
      assert.deepEqual(queued.map((b) => [b.id, b.builder, b.state]), [[id, 'hello', 'queued']]);
      assert.equal(second.coordinator.queuedCount(), 1);
    } finally {
      await second.close();
    }
  });
}
