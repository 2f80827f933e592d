import { test } from 'node:test';
import assert from 'node:assert/strict';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { readiness } from '../master/metrics.js';
import { openStore } from '../master/store/open-store.js';
import { NO_TEST_POSTGRES, TEST_POSTGRES_ENV, TestDatabases } from '../master/store/postgres-test-db.js';
import type { Store } from '../master/store/store.js';
import { createWorkerToken } from '../master/tokens.js';
import { startWorker, type WorkerHandle } from '../worker/agent.js';
import { cleanup, tempDir, testMaster, until } from './helpers/cluster.js';

/** The samples of a Prometheus text exposition: `name{labels}` → value. */
function samples(text: string): Map<string, number> {
  const out = new Map<string, number>();
  for (const line of text.split('\n')) {
    if (line === '' || line.startsWith('#')) continue;
    const m = /^([a-zA-Z_:][a-zA-Z0-9_:]*(?:\{[^}]*\})?) (\S+)$/.exec(line);
    assert.ok(m, `a sample line: ${line}`);
    out.set(m[1]!, Number(m[2]));
  }
  return out;
}

test('/metrics: builds by result, queue, workers by state, log and artifact bytes, store latency, as Prometheus text; /readyz says the store answers', async (t) => {
  const m = await testMaster({
    ok: 'requires: { executor: host }\nsteps:\n  - run: echo hello from the build; echo art > a.txt\nartifacts: [a.txt]\n',
    bad: 'requires: { executor: host }\nsteps:\n  - run: exit 3\n',
  });
  const dir = tempDir('metrics-worker');
  const workers: WorkerHandle[] = [];
  t.after(async () => { for (const w of workers) await w.close(); await m.close(); cleanup(dir); });
  const scrape = async () => {
    const r = await fetch(`${m.url}/metrics`);
    assert.equal(r.status, 200);
    assert.match(r.headers.get('content-type') ?? '', /^text\/plain; version=0\.0\.4/);
    return samples(await r.text());
  };

  const ids = [await m.force('ok'), await m.force('ok'), await m.force('bad')];
  const before = await scrape();
  assert.equal(before.get('crowdbake_queue_length'), 3, 'three builds wait, no worker yet');
  assert.equal(before.get('crowdbake_workers{state="idle"}'), 0);

  const said: string[] = [];
  workers.push(await startWorker({ preferences: { when: 'always' }, idleSource: 'none', master: m.url, token: await m.token('wm'), dataDir: dir, executor: 'host', labels: [], log: (l) => said.push(l) }));
  const results = await Promise.all(ids.map((id) => m.waitFinished(id)));
  assert.deepEqual(results.map((b) => b.result), ['success', 'success', 'failure']);
  // The governor's first decision arrives while the agent is still starting: it must not fail.
  assert.deepEqual(said.filter((l) => /failed/.test(l)), [], 'the worker reported no failure of its own');
  const after = await until('the worker to be idle again in the metrics', async () => {
    const s = await scrape();
    return s.get('crowdbake_workers{state="idle"}') === 1 ? s : null;
  });
  assert.equal(after.get('crowdbake_builds_finished_total{result="success"}'), 2);
  assert.equal(after.get('crowdbake_builds_finished_total{result="failure"}'), 1);
  assert.equal(after.get('crowdbake_queue_length'), 0);
  assert.equal(after.get('crowdbake_workers{state="offline"}'), 0);
  assert.equal(after.get('crowdbake_queue_wait_seconds_count'), 3, 'one wait per started attempt');
  let logged = 0;
  for (const id of ids) logged += (await (await fetch(`${m.url}/api/v1/builds/${id}/log`)).arrayBuffer()).byteLength;
  assert.ok(logged > 0);
  assert.equal(after.get('crowdbake_log_bytes_total'), logged, 'log bytes are what the logs hold');
  assert.equal(after.get('crowdbake_artifact_bytes_total'), 2 * 'art\n'.length);
  assert.ok((after.get('crowdbake_store_seconds_count{op="updateBuild"}') ?? 0) >= 3, 'store calls are timed');
  assert.ok((after.get('process_resident_memory_bytes') ?? 0) > 0, 'and the process\'s own metrics are there');

  const ready = await fetch(`${m.url}/readyz`);
  assert.equal(ready.status, 200);
  const body = (await ready.json()) as { ready: boolean; store: string; lease: null };
  assert.equal(body.ready, true);
  assert.equal(body.store, 'ok');
  assert.equal(body.lease, null, 'one master holds no lease');
});

test('/metrics of a private farm (public: false) needs the admin token', async (t) => {
  const dir = tempDir('metrics-private');
  t.after(() => cleanup(dir));
  const m0 = await testMaster({}, { dir });
  await m0.close();
  writeFileSync(join(dir, 'config', 'crowdbake.yml'), 'public: false\n');
  const m = await testMaster({}, { dir });
  t.after(() => m.close());
  assert.equal((await fetch(`${m.url}/metrics`)).status, 401);
  const r = await fetch(`${m.url}/metrics`, { headers: { authorization: `Bearer ${m.adminToken}` } });
  assert.equal(r.status, 200);
  assert.ok(samples(await r.text()).has('crowdbake_queue_length'));
});

test('/readyz: 503 naming the cause when the store does not answer in time, or fails', async () => {
  // A stand-in store (only listBuilds is called): one that never answers, one that throws.
  const silent = { listBuilds: () => new Promise(() => {}) } as unknown as Store;
  const r = await readiness(silent, 50);
  assert.deepEqual(r, { status: 503, body: { ready: false, store: 'unreachable: no answer within 50 ms', storeMs: null, lease: null } });
  const broken = { listBuilds: () => Promise.reject(new Error('connection refused')) } as unknown as Store;
  assert.equal((await readiness(broken)).body.store, 'unreachable: connection refused');
});

const postgres = process.env[TEST_POSTGRES_ENV];

test('/metrics with several masters on PostgreSQL: claims and fenced writes count like single-master writes — a build queued through another master included', { skip: postgres ? false : NO_TEST_POSTGRES }, async (t) => {
  const dbs = new TestDatabases(postgres!);
  const url = await dbs.create();
  const builders = { ok: 'requires: { executor: host }\nsteps:\n  - run: echo ok\n', bad: 'requires: { executor: host }\nsteps:\n  - run: exit 3\n' };
  const a = await testMaster(builders, { storeUrl: url, leaseMs: 6000 });
  const b = await testMaster(builders, { storeUrl: url, leaseMs: 6000 });
  const dir = tempDir('metrics-pg-worker');
  t.after(async () => { await a.close(); await b.close(); await dbs.dropAll(); cleanup(a.dataDir, b.dataDir, dir); });
  const scrape = async (m: typeof a) => samples(await (await fetch(`${m.url}/metrics`)).text());

  // Three through A, one through B; the only worker is A's, so A claims all four.
  const ids = [await a.force('ok'), await a.force('ok'), await a.force('bad'), await b.force('ok')];
  const store = await openStore(url);
  const token = await createWorkerToken(store, 'pg-metrics-w', []);
  await store.close();
  const w = await startWorker({ preferences: { when: 'always' }, idleSource: 'none', master: a.url, token, dataDir: dir, executor: 'host', labels: [], log: () => undefined });
  t.after(() => w.close());
  const results = await Promise.all(ids.map((id) => a.waitFinished(id)));
  assert.deepEqual(results.map((r) => r.result), ['success', 'success', 'failure', 'success']);
  const s = await until('A to count all four ends', async () => {
    const x = await scrape(a);
    return (x.get('crowdbake_builds_finished_total{result="success"}') ?? 0) + (x.get('crowdbake_builds_finished_total{result="failure"}') ?? 0) === 4 ? x : null;
  });
  assert.equal(s.get('crowdbake_builds_finished_total{result="success"}'), 3);
  assert.equal(s.get('crowdbake_builds_finished_total{result="failure"}'), 1);
  assert.equal(s.get('crowdbake_queue_wait_seconds_count'), 4, 'one wait per claimed attempt, B\'s build too');
  assert.ok((s.get('crowdbake_queue_wait_seconds_sum') ?? 0) > 0, 'waits measured from each row\'s own queue time');
  assert.equal(s.get('crowdbake_store_seconds_count{op="claims.claim"}'), 4, 'claims are timed');
  assert.ok((s.get('crowdbake_store_seconds_count{op="claims.update"}') ?? 0) >= 4, 'fenced writes are timed');
  // B ran nothing: it counts no end and no wait of A's.
  const sb = await scrape(b);
  assert.equal(sb.get('crowdbake_queue_wait_seconds_count'), 0);
  assert.equal(sb.get('crowdbake_builds_finished_total{result="success"}') ?? 0, 0);
});
