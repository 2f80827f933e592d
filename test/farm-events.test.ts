import { test } from 'node:test';
import assert from 'node:assert/strict';
import WebSocket from 'ws';
import type { DashboardEvent, WorkerView } from '../protocol/api.js';
import { openStore } from '../master/store/open-store.js';
import { NO_TEST_POSTGRES, TEST_POSTGRES_ENV, TestDatabases } from '../master/store/postgres-test-db.js';
import { createWorkerToken } from '../master/tokens.js';
import { startWorker } from '../worker/agent.js';
import { cleanup, tempDir, testMaster, until } from './helpers/cluster.js';

// Several masters on one PostgreSQL: a dashboard connected to one master sees the builds,
// logs and workers of another live (master/farm/event-relay.ts), and reads their logs
// (master/store/postgres-logs.ts). Two real masters, a real worker, a real database.
const server = process.env[TEST_POSTGRES_ENV];
const skip = server ? false : NO_TEST_POSTGRES;
// Control characters first (JSON makes each 6 bytes: a naive split of the relayed log overran NOTIFY's limit), then the line the test looks for.
const BUILDER = 'requires: { executor: host }\nsteps:\n  - run: head -c 20000 /dev/zero | tr "\\\\000" "\\\\001"; echo; echo "output of build $CROWDBAKE_BUILD_ID"\n';

test('farm: a dashboard on master B sees, live, a build that runs on a worker of master A — its states, its log, the worker — and B serves its log', { skip }, async (t) => {
  const dbs = new TestDatabases(server!);
  const url = await dbs.create();
  const a = await testMaster({ quick: BUILDER }, { storeUrl: url, leaseMs: 6000 });
  const b = await testMaster({ quick: BUILDER }, { storeUrl: url, leaseMs: 6000 });
  const wd = tempDir('farm-dash-w');
  t.after(async () => { await a.close(); await b.close(); await dbs.dropAll(); cleanup(a.dataDir, b.dataDir, wd); });

  const events: DashboardEvent[] = [];
  const ws = new WebSocket(`${b.url.replace('http', 'ws')}/api/v1/events`, { headers: { authorization: `Bearer ${b.adminToken}` } });
  ws.on('message', (d) => events.push(JSON.parse(d.toString()) as DashboardEvent));
  await new Promise((ok, fail) => { ws.once('open', ok); ws.once('error', fail); });
  t.after(() => ws.close());

  const store = await openStore(url);
  const token = await createWorkerToken(store, 'farm-w1', []);
  await store.close();
  const worker = await startWorker({ preferences: { when: 'always' }, idleSource: 'none', master: a.url, token, dataDir: wd, executor: 'host', labels: [], log: () => undefined });
  t.after(() => worker.close());

  await until('B to see the worker connected (through A)', () => events.some((e) => e.type === 'worker' && e.worker.name === 'farm-w1' && e.worker.connected));
  const listed = await b.get<WorkerView[]>('/api/v1/workers');
  assert.equal(listed.find((w) => w.name === 'farm-w1')?.connected, true, 'B lists the worker connected to A as connected');

  // Forced on B: the build is claimed by A for its worker.
  const id = await b.force('quick');
  const done = await b.waitFinished(id, 30_000);
  assert.equal(done.result, 'success');
  await until('B to hear the build finish and its output', () =>
    events.some((e) => e.type === 'build' && e.build.id === id && e.build.state === 'finished')
    && events.filter((e) => e.type === 'log' && e.buildId === id).map((e) => (e as { data: string }).data).join('').includes(`output of build ${id}`));
  const states = events.filter((e) => e.type === 'build' && e.build.id === id).map((e) => (e as { build: { state: string } }).build.state);
  assert.ok(states.includes('running'), `B heard it running: ${states.join(',')}`);
  const running = events.find((e) => e.type === 'worker' && e.worker.name === 'farm-w1' && e.worker.builds.includes(id));
  assert.ok(running, 'B heard the worker busy with the build');

  // Both masters serve the whole log (the shared store's rows), the same.
  const logB = await fetch(`${b.url}/api/v1/builds/${id}/log`).then((r) => r.text());
  const logA = await fetch(`${a.url}/api/v1/builds/${id}/log`).then((r) => r.text());
  assert.match(logB, new RegExp(`^\\*\\*\\* attempt 1 on worker farm-w1 .*\\n[\\s\\S]*^output of build ${id}$[\\s\\S]*^build success$`, 'm'));
  assert.equal(logA, logB);

  // The worker leaves A: B shows it offline.
  await worker.close();
  await until('B to show the worker offline', async () => (await b.get<WorkerView[]>('/api/v1/workers')).find((w) => w.name === 'farm-w1')?.connected === false);
});
