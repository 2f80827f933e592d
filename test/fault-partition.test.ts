import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import type { BuildView, WorkerView } from '../protocol/api.js';
import { NO_TEST_POSTGRES, TEST_POSTGRES_ENV } from '../master/store/postgres-test-db.js';
import { startWorker } from '../worker/agent.js';
import { CLI, cleanup, tempDir, testMaster, until, writeBuilder } from './helpers/cluster.js';
import { FARM_PG_ADDRESS, NetNamespace, netnsUnavailable } from './helpers/netns.js';
import { faultFarm } from './helpers/fault-farm.js';
import { freePort, MasterProcess } from './helpers/master-process.js';

// Fault suite: a worker in its own network namespace, joined to the master by a veth pair
// with addresses used nowhere else (10.213.N.0/30). Cutting the link partitions it: a short
// cut must leave the build running with its log whole; a long one must requeue the build
// elsewhere, with no line of the log lost or repeated, and stop it on the cut-off worker.
// Needs root (ip netns); the test runs as root here and in CI.
const noNetns = netnsUnavailable();
const LINES = 100;
const COUNT = `
requires: { executor: host }
steps:
  - run: for i in $(seq 1 ${LINES}); do echo "line $i"; sleep 0.08; done
`;

/** The numbers of the `line N` output in a log section, in order. */
const lineNumbers = (text: string) => [...text.matchAll(/^line (\d+)$/gm)].map((x) => Number(x[1]));
const oneToN = (n: number) => Array.from({ length: n }, (_, i) => i + 1);

test('fault: a worker cut off by a network partition: a short cut resumes, a long one requeues; the log has no gap or repeat', { skip: noNetns }, async (t) => {
  const started = Date.now();
  const ns = NetNamespace.create('worker');
  t.after(() => ns.close());
  const net = { ...ns.link(), ns: ns.name };
  const m = await testMaster({ count: COUNT }, { host: net.hostAddress, heartbeatMs: 2000 });
  const dirs = [tempDir('wp'), tempDir('wh')];
  t.after(async () => { await m.close(); cleanup(...dirs); });
  const wp = spawn('ip', ['netns', 'exec', net.ns, process.execPath, CLI, 'worker', '--master', m.url, '--token', await m.token('wp'),
    '--data', dirs[0]!, '--when', 'always', '--executor', 'host'], { stdio: ['ignore', 'pipe', 'pipe'] });
  let wpOut = '';
  wp.stdout.on('data', (c: Buffer) => { wpOut += c.toString(); });
  wp.stderr.on('data', (c: Buffer) => { wpOut += c.toString(); });
  t.after(() => { wp.kill('SIGKILL'); });
  const connected = async (name: string) => (await m.get<WorkerView[]>('/api/v1/workers')).some((w) => w.name === name && w.connected);
  await until('wp to connect from its namespace', () => connected('wp'), 30_000);
  const log = (id: number) => fetch(`${m.url}/api/v1/builds/${id}/log`).then((r) => r.text());

  // 1. A cut of 1 s, shorter than the heartbeat: TCP carries the build's output over it.
  const a = await m.force('count');
  await until('build a to print line 5', async () => lineNumbers(await log(a)).includes(5), 30_000);
  net.cut();
  await new Promise((ok) => setTimeout(ok, 1000));
  net.heal();
  const doneA = await m.waitFinished(a, 60_000);
  const logA = await log(a);
  assert.equal(doneA.result, 'success', logA);
  assert.deepEqual([doneA.attempt, doneA.worker], [1, 'wp'], 'resumed on the same worker, same attempt');
  assert.deepEqual(lineNumbers(logA), oneToN(LINES), `no gap, no repeat:\n${logA}`);
  const shortCutMs = Date.now() - started;

  // 2. A long cut: the master drops wp and requeues on wh; wp, hearing nothing, stops its build.
  const b = await m.force('count');
  await until('build b to print line 5 on wp', async () => lineNumbers(await log(b)).includes(5), 30_000);
  const wh = await startWorker({ preferences: { when: 'always' }, idleSource: 'none', master: m.url, token: await m.token('wh'),
    dataDir: dirs[1]!, executor: 'host', labels: [], log: () => undefined });
  t.after(() => wh.close());
  await until('wh to connect', () => connected('wh'));
  const cutAt = Date.now();
  net.cut();
  const requeued = await until('build b to run on wh', async () => {
    const v = await m.get<BuildView>(`/api/v1/builds/${b}`);
    return v.worker === 'wh' ? Date.now() - cutAt : 0;
  }, 30_000);
  await until('wp to give up the silent connection and stop build b', () => wpOut.includes(`build ${b} cancelled`) ? true : null, 30_000);
  const stoppedAfter = Date.now() - cutAt;
  assert.match(wpOut, /no word from the master for \d+\.\ds/);
  const doneB = await m.waitFinished(b, 60_000);
  net.heal();
  const logB = await log(b);
  assert.equal(doneB.result, 'success', logB);
  assert.deepEqual([doneB.attempt, doneB.worker], [2, 'wh']);
  const requeueAt = logB.indexOf('*** worker wp disconnected; build requeued (attempt 1 of 3) ***');
  const secondAt = logB.indexOf('*** attempt 2 on worker wh');
  assert.ok(requeueAt > 0 && secondAt > requeueAt, logB);
  const first = lineNumbers(logB.slice(0, requeueAt));
  assert.ok(first.length >= 5, logB);
  assert.deepEqual(first, oneToN(first.length), `attempt 1 is a clean prefix:\n${logB}`);
  assert.deepEqual(lineNumbers(logB.slice(requeueAt, secondAt)), [], `nothing of attempt 1 after the requeue:\n${logB}`);
  assert.deepEqual(lineNumbers(logB.slice(secondAt)), oneToN(LINES), `attempt 2 whole:\n${logB}`);
  assert.equal(logB.match(/^build success$/gm)?.length, 1, logB);

  // Healed, wp comes back and builds again.
  await until('wp to reconnect', () => connected('wp'), 60_000);
  await wh.close();
  const c = await m.waitFinished(await m.force('count'), 60_000);
  assert.deepEqual([c.result, c.worker], ['success', 'wp']);
  console.log(`fault-partition: 1 s cut: resumed, ${LINES}/${LINES} lines once; long cut: requeued on wh after ${(requeued / 1000).toFixed(1)} s, `
    + `wp stopped its build after ${(stoppedAfter / 1000).toFixed(1)} s; short phase ${(shortCutMs / 1000).toFixed(1)} s, total ${((Date.now() - started) / 1000).toFixed(1)} s`);
});

// Fault suite, several masters: three `crowdbake master` processes on one PostgreSQL; master 0
// runs in a network namespace of its own with two veth links — `front` to its workers and to
// this test, `back` to PostgreSQL (FARM_PG_ADDRESS, scripts/start-postgres.sh). Six real
// workers (host executor) are given every master's URL; three start on master 0, dialing it
// through `front`. Mid-flood (FLOOD builds asked for over every master), with builds running
// on master 0's workers, master 0 is partitioned:
//   - `full`: both links cut. It loses PostgreSQL and its workers; its lease runs out; its
//     workers fail over to the other masters, which adopt their attempts.
//   - `store`: only `back` is cut. Its workers still reach it, but it loses its lease: it must
//     let its builds go (to be adopted elsewhere), never finish one.
// Then the partition heals: master 0 must find its lease lost, step down and join again under
// a new id, having written nothing about the attempts it lost. Every build must finish once,
// its log (read from another master) must hold its output once, and the running builds must
// have been adopted (counted; restarted ones are counted too). An audit trigger in the test's
// database records each write with the address it came from: none from master 0's namespace
// may touch the stale id's attempts after its lease ran out.
// CROWDBAKE_FAULT_PARTITION_BUILDS (default 500).
const server = process.env[TEST_POSTGRES_ENV];
const FLOOD = Number(process.env.CROWDBAKE_FAULT_PARTITION_BUILDS ?? 500);
const WORKERS = 6;
/** Every SLOW-th build sleeps long enough to be running through the fail-over. */
const SLOW = 10;

const AUDIT = `
CREATE TABLE audit (at TIMESTAMPTZ NOT NULL DEFAULT clock_timestamp(), tbl TEXT NOT NULL, op TEXT NOT NULL, client INET, build_id BIGINT,
  attempt INTEGER, old_holder TEXT, new_holder TEXT, old_state TEXT, new_state TEXT, note BOOLEAN);
CREATE FUNCTION audit_row() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE n JSONB := to_jsonb(NEW); o JSONB := CASE WHEN TG_OP = 'UPDATE' THEN to_jsonb(OLD) ELSE NULL END;
BEGIN
  INSERT INTO audit (tbl, op, client, build_id, attempt, old_holder, new_holder, old_state, new_state, note) VALUES (TG_TABLE_NAME, TG_OP, inet_client_addr(),
    COALESCE(n->>'build_id', n->>'id')::bigint, (n->>'attempt')::int, o->>'holder', n->>'holder', o->>'state', n->>'state',
    TG_TABLE_NAME = 'log_chunks' AND n->>'attempt' IS NULL);
  RETURN NEW;
END $$;
CREATE TRIGGER audit_builds AFTER INSERT OR UPDATE ON builds FOR EACH ROW EXECUTE FUNCTION audit_row();
CREATE TRIGGER audit_steps AFTER INSERT OR UPDATE ON steps FOR EACH ROW EXECUTE FUNCTION audit_row();
CREATE TRIGGER audit_artifacts AFTER INSERT OR UPDATE ON artifacts FOR EACH ROW EXECUTE FUNCTION audit_row();
CREATE TRIGGER audit_logs AFTER INSERT ON log_chunks FOR EACH ROW EXECUTE FUNCTION audit_row();`;

const skipFarm = noNetns || (server ? false : NO_TEST_POSTGRES);

for (const cut of ['full', 'store'] as const) {
test(`fault (partition): master 0 of 3, in a network namespace, is cut off from ${cut === 'full' ? 'PostgreSQL and its workers' : 'PostgreSQL only (its workers still reach it)'} mid-flood of ${FLOOD} builds, then healed: none lost, none finished twice, each log's output once, the running ones adopted, nothing written by the stale master`, { skip: skipFarm }, async (t) => {
  const began = Date.now();
  const dir = tempDir('partition');
  const marks = join(dir, 'runs.txt');
  const configDir = join(dir, 'config');
  const step = (sleep: number) => `requires: { executor: host }\nsteps:\n  - run: echo "start $CROWDBAKE_BUILD_ID" >> ${marks}; echo "first $CROWDBAKE_BUILD_ID"; sleep ${sleep}; echo "second $CROWDBAKE_BUILD_ID"; echo "end $CROWDBAKE_BUILD_ID" >> ${marks}\n`;
  writeBuilder(configDir, 'quick', step(0.1));
  writeBuilder(configDir, 'slow', step(6));
  const farm = await faultFarm(t, server!, dir);
  const { url, dbs, masters, workers } = farm;
  const ns = NetNamespace.create('master');
  farm.onClose(() => ns.close());
  const front = ns.link();
  const back = ns.link([FARM_PG_ADDRESS]);
  // Master 0 reaches the same database at the address on lo, through `back`.
  const farUrl = new URL(url);
  farUrl.hostname = FARM_PG_ADDRESS;
  const args = (store: string) => ['--store', store, '--lease', '12s', '--heartbeat', '2s'];
  masters.push(new MasterProcess(configDir, join(dir, 'data0'), front.nsAddress, await freePort(), args(farUrl.href), ns.exec));
  // The schema first (master 0 may not be the one that migrates), then the audit trigger.
  await masters[0]!.start().catch((e: Error) => {
    throw new Error(`${e.message}\n(does PostgreSQL listen on ${FARM_PG_ADDRESS}? run scripts/start-postgres.sh as root)`);
  });
  await dbs.sql(url, AUDIT);
  for (let i = 1; i < 3; i++) masters.push(new MasterProcess(configDir, join(dir, `data${i}`), '127.0.0.1', await freePort(), args(url)));
  await Promise.all(masters.slice(1).map((m) => m.start()));
  const fromNs = await dbs.sql<{ n: string }>(url, 'SELECT count(*) AS n FROM pg_stat_activity WHERE client_addr = $1 AND datname = current_database()', [back.nsAddress]);
  assert.ok(Number(fromNs[0]!.n) > 0, `master 0 is connected to PostgreSQL from its namespace (${back.nsAddress})`);
  const store = await farm.openStore();
  const urls = masters.map((m) => m.url);
  // Three start on master 0 (through `front`), the others on master 1 or 2; each knows all three.
  for (let i = 0; i < WORKERS; i++) await farm.worker(`pw${i}`, i < 3 ? urls : i % 2 ? [urls[1]!, urls[2]!, urls[0]!] : [urls[2]!, urls[1]!, urls[0]!], { maxBuilds: 2 });
  await until('every worker to connect', async () => {
    const rows = await dbs.sql<{ n: string }>(url, 'SELECT count(*) AS n FROM workers');
    return Number(rows[0]!.n) === WORKERS;
  }, 30_000);
  const victim = ((await (await fetch(`${urls[0]}/readyz`)).json()) as { lease: { holder: string } | null }).lease?.holder;
  assert.ok(victim, 'master 0 reports its lease on /readyz');

  // The flood: asked for over the masters a client can reach — master 0 only until the cut is
  // decided (its answers are awaited before cutting, so every build asked for has its id).
  const ids: number[] = [];
  let toMaster0 = true;
  let sent = 0;
  const inFlight0 = new Set<Promise<unknown>>();
  const ask = async (i: number): Promise<void> => {
    const reachable = toMaster0 ? masters : masters.slice(1);
    const m = reachable[i % reachable.length]!;
    const r = fetch(`${m.url}/api/v1/builders/${i % SLOW === 0 ? 'slow' : 'quick'}/builds`, {
      method: 'POST', headers: { authorization: `Bearer ${m.adminToken}`, 'content-type': 'application/json' }, body: JSON.stringify({ reason: `flood-${i}` }),
    });
    if (m === masters[0]) { inFlight0.add(r); void r.finally(() => inFlight0.delete(r)).catch(() => undefined); }
    const res = await r;
    const body = (await res.json()) as { id: number; error?: string };
    assert.equal(res.status, 201, body.error);
    ids.push(body.id);
  };
  // Eight clients, each asking again once answered, paced so the flood outlasts the cut.
  const flood = Promise.all(Array.from({ length: 8 }, async () => {
    while (sent < FLOOD) {
      await ask(sent++);
      await new Promise((ok) => setTimeout(ok, 120));
    }
  }));
  const floodFailed = flood.then(() => null, (e: Error) => e);

  // Cut once master 0's workers are in the middle of builds, and mid-flood.
  let seen = '';
  const runningThere = await until('builds running on master 0\'s workers', async () => {
    const e = await Promise.race([floodFailed, Promise.resolve(null)]);
    if (e) throw e;
    const rows = await dbs.sql<{ id: string; holder: string | null; state: string; old: boolean }>(url, `SELECT id, holder, state, started_at < $1 AS old FROM builds`, [new Date(Date.now() - 500).toISOString()]);
    seen = `${sent} sent; ` + JSON.stringify(rows.reduce<Record<string, number>>((o, r) => { const k = `${r.state}:${r.holder === victim ? 'master0' : r.holder ? 'other' : '-'}`; o[k] = (o[k] ?? 0) + 1; return o; }, {}));
    const mine = rows.filter((r) => r.state === 'running' && r.holder === victim && r.old);
    return sent >= FLOOD / 5 && mine.length >= 2 ? mine.map((r) => Number(r.id)) : null;
  }, 120_000).catch((e: Error) => { throw new Error(`${e.message} (${seen})`); });
  toMaster0 = false;
  await Promise.allSettled([...inFlight0]);
  if (cut === 'full') front.cut();
  back.cut();
  const cutAt = Date.now();
  const sentAtCut = sent;
  const expiry = await until('master 0\'s lease to run out', async () => {
    const [r] = await dbs.sql<{ live: boolean; until: Date }>(url, 'SELECT alive_until > now() AS live, alive_until AS until FROM masters WHERE id = $1', [victim]);
    return r && !r.live ? r.until : null;
  }, 60_000);
  const expiredAfter = Date.now() - cutAt;
  // Its workers moved on (full: they heard nothing; store: it let them go) and were adopted,
  // all while the partition lasts: nothing running is held by the stale id any more.
  await until('the stale id to hold nothing running', async () => {
    const [r] = await dbs.sql<{ n: string }>(url, `SELECT count(*) AS n FROM builds WHERE holder = $1 AND state IN ('running', 'frozen')`, [victim]);
    return Number(r!.n) === 0;
  }, 30_000);
  if (cut === 'store') assert.match(masters[0]!.output(), /lost this master's lease \([^:]+: no renewal of this master's lease for \d+\.\ds/, 'it stepped down by its own clock while cut off');
  front.heal();
  back.heal();
  const healedAt = Date.now();
  const back0 = await until('master 0 to step down and join again under a new id', async () => {
    const r = await fetch(`${urls[0]}/readyz`).then((x) => x.json() as Promise<{ lease: { holder: string; held: boolean; losses: number } | null }>, () => null);
    return r?.lease?.held && r.lease.holder !== victim ? r.lease : null;
  }, 120_000);
  const rejoinedAfter = Date.now() - healedAt;
  await flood;
  // Under its new id it takes requests again (any master's worker may run the build).
  const again = await fetch(`${urls[0]}/api/v1/builders/quick/builds`, {
    method: 'POST', headers: { authorization: `Bearer ${masters[0]!.adminToken}`, 'content-type': 'application/json' }, body: JSON.stringify({ reason: 'after the heal' }),
  });
  assert.equal(again.status, 201, 'master 0 answers a build request after it joined again');
  ids.push(((await again.json()) as { id: number }).id);

  await until('every build to finish', async () => {
    const rows = await dbs.sql<{ n: string }>(url, `SELECT count(*) AS n FROM builds WHERE state <> 'finished'`);
    return Number(rows[0]!.n) === 0;
  }, 240_000);

  // Nothing lost, nothing twice.
  const rows = await store.listBuilds({ limit: 10_000 });
  assert.equal(ids.length, FLOOD + 1);
  assert.equal(rows.length, FLOOD + 1, 'no build lost, none added');
  assert.deepEqual(rows.map((b) => b.id).sort((a, b) => a - b), [...ids].sort((a, b) => a - b), 'the rows are the builds asked for');
  assert.deepEqual(rows.filter((b) => b.result !== 'success').map((b) => [b.id, b.result, b.message]), [], 'every build succeeded');
  const lines = readFileSync(marks, 'utf8').trim().split('\n');
  const runs = new Map<string, number>();
  for (const l of lines) runs.set(l, (runs.get(l) ?? 0) + 1);
  const count = (kind: string, id: number) => runs.get(`${kind} ${id}`) ?? 0;
  const finishedTwice = ids.filter((id) => count('end', id) !== 1);
  assert.deepEqual(finishedTwice, [], 'every build ran to its end exactly once');
  // …and the store wrote each build's end once.
  const endedTwice = await dbs.sql<{ id: string; n: string }>(url, `SELECT build_id AS id, count(*) AS n FROM audit WHERE tbl = 'builds'
    AND new_state = 'finished' AND old_state IS DISTINCT FROM 'finished' GROUP BY build_id HAVING count(*) <> 1`);
  assert.deepEqual(endedTwice, [], 'each build ended once in the store');

  // Each build's log, from master 1, has its output once (a restarted build: the end once).
  const restartedAnywhere = ids.filter((id) => count('start', id) > 1);
  const badLogs: string[] = [];
  for (const id of ids) {
    const text = await fetch(`${urls[1]}/api/v1/builds/${id}/log`).then((r) => r.text());
    const times = (what: string) => text.match(new RegExp(`^${what} ${id}$`, 'gm'))?.length ?? 0;
    const want = count('start', id);
    if (times('first') !== want || times('second') !== 1) badLogs.push(`build ${id}: "first" ${times('first')}× (${want} start), "second" ${times('second')}×\n${text.slice(-1500)}`);
  }
  assert.deepEqual(badLogs, [], 'every log has its output exactly once');

  // The running builds were adopted, not restarted.
  const byId = new Map(rows.map((b) => [b.id, b]));
  const adopted = runningThere.filter((id) => byId.get(id)!.attempt === 1 && count('start', id) === 1);
  const restarted = runningThere.filter((id) => !adopted.includes(id));
  const adoptions = await dbs.sql<{ n: string }>(url, `SELECT count(*) AS n FROM audit WHERE tbl = 'builds' AND op = 'UPDATE' AND old_holder = $1 AND new_holder <> $1`, [victim]);

  // No write from master 0's namespace about the stale id's attempts once its lease ran out.
  const stale = await dbs.sql<{ tbl: string; op: string; build_id: string; at: Date }>(url, `SELECT tbl, op, build_id, at FROM audit
    WHERE client = $1 AND at > $2 AND (
      (tbl = 'builds' AND (old_holder = $3 OR new_holder = $3))
      OR (tbl <> 'builds' AND build_id = ANY($4::bigint[]) AND (note OR attempt = 1 OR tbl = 'steps')))`, [back.nsAddress, expiry, victim, adopted]);
  assert.deepEqual(stale, [], 'nothing written by the stale master after its lease ran out');
  assert.ok(back0.losses >= 1);
  assert.match(masters[0]!.output(), /lost this master's lease/);

  const summary = `fault-partition (${cut}): ${FLOOD} builds (${sentAtCut} asked for before the cut) and 1 after the heal, 0 lost, ${finishedTwice.length} finished twice, ${badLogs.length} logs wrong; running on master 0's workers at the cut: ${runningThere.length}, `
    + `adopted ${adopted.length}, restarted ${restarted.length} (adoptions from the stale id in the store: ${adoptions[0]!.n}; restarted anywhere: ${restartedAnywhere.length}); `
    + `lease ran out ${(expiredAfter / 1000).toFixed(1)} s after the cut, master 0 back under a new id ${(rejoinedAfter / 1000).toFixed(1)} s after the heal; total ${((Date.now() - began) / 1000).toFixed(1)} s`;
  console.log(summary);
  assert.ok(adopted.length > 0, 'some running builds were adopted');
  assert.deepEqual(restarted, [], 'the builds running on master 0\'s workers were adopted, not restarted');
});
}
