import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { TEST_POSTGRES_ENV, NO_TEST_POSTGRES } from '../master/store/postgres-test-db.js';
import { tempDir, until, writeBuilder } from './helpers/cluster.js';
import { faultFarm } from './helpers/fault-farm.js';
import { freePort, MasterProcess } from './helpers/master-process.js';

// Fault suite, several masters: three `crowdbake master` processes on one PostgreSQL, real
// workers (host executor) each given every master's URL. While builds run, the master most
// workers are on is SIGKILLed. Every build must finish exactly once, and the builds running
// on the killed master's workers must be adopted by another master — carried on, not
// restarted (each build's step appends `start`/`end` lines to a shared file: one of each).
// CROWDBAKE_FAULT_FARM_BUILDS (default 24).
const server = process.env[TEST_POSTGRES_ENV];
const BUILDS = Number(process.env.CROWDBAKE_FAULT_FARM_BUILDS ?? 24);
const WORKERS = 4;

for (const fault of ['SIGKILL', 'SIGSTOP'] as const) {
test(`fault (farm): the master of running builds is ${fault === 'SIGKILL' ? 'SIGKILLed' : 'paused (SIGSTOP) past its lease, then resumed'}; ${BUILDS} builds on 3 masters, none lost, none run twice, the running ones adopted`, { skip: server ? false : NO_TEST_POSTGRES }, async (t) => {
  const dir = tempDir('farm');
  const marks = join(dir, 'runs.txt');
  const configDir = join(dir, 'config');
  writeBuilder(configDir, 'slow', `requires: { executor: host }\nsteps:\n  - run: echo "start $CROWDBAKE_BUILD_ID" >> ${marks}; sleep 2; echo "end $CROWDBAKE_BUILD_ID" >> ${marks}\n`);
  const farm = await faultFarm(t, server!, dir);
  const { url, dbs, masters, workers } = farm;
  for (let i = 0; i < 3; i++) {
    masters.push(new MasterProcess(configDir, join(dir, `data${i}`), '127.0.0.1', await freePort(), ['--store', url, '--lease', fault === 'SIGKILL' ? '6s' : '12s', '--heartbeat', '2s']));
  }
  await Promise.all(masters.map((m) => m.start()));
  const store = await farm.openStore();
  const urls = masters.map((m) => m.url);
  // Three workers start on master 0 (the one to be killed), one on master 1; each knows all three.
  for (let i = 0; i < WORKERS; i++) await farm.worker(`fw${i}`, i < 3 ? urls : [urls[1]!, urls[2]!, urls[0]!]);
  // Builds asked for on every master in turn.
  const ids: number[] = [];
  for (let i = 0; i < BUILDS; i++) {
    const m = masters[i % 3]!;
    const r = await fetch(`${m.url}/api/v1/builders/slow/builds`, {
      method: 'POST', headers: { authorization: `Bearer ${m.adminToken}`, 'content-type': 'application/json' }, body: JSON.stringify({ reason: `farm-${i}` }),
    });
    const body = (await r.json()) as { id: number; error?: string };
    assert.equal(r.status, 201, body.error);
    ids.push(body.id);
  }
  // Kill master 0 once its workers are in the middle of builds.
  // Its id in the farm, as its /readyz reports it.
  const victim = ((await (await fetch(`${masters[0]!.url}/readyz`)).json()) as { lease: { holder: string } | null }).lease?.holder;
  assert.ok(victim, 'master 0 reports its lease on /readyz');
  const runningThere = await until('builds running on master 0\'s workers', async () => {
    const rows = await dbs.sql<{ id: string }>(url, `SELECT id FROM builds WHERE state = 'running' AND holder = $1 AND started_at < $2`, [victim, new Date(Date.now() - 500).toISOString()]);
    return rows.length >= 2 ? rows.map((r) => Number(r.id)) : null;
  }, 60_000);
  if (fault === 'SIGKILL') await masters[0]!.stop('SIGKILL');
  else {
    // Paused: its workers hear nothing for 2.5 heartbeats and move on; its lease runs out.
    masters[0]!.signal('SIGSTOP');
    await until('master 0\'s lease to run out', async () => (await dbs.sql<{ live: boolean }>(url, 'SELECT alive_until > now() AS live FROM masters WHERE id = $1', [victim]))[0]?.live === false, 60_000);
    // Resumed: it must find its lease lost and write nothing about those builds.
    masters[0]!.signal('SIGCONT');
  }

  await until('every build to finish', async () => {
    const rows = await dbs.sql<{ n: string }>(url, `SELECT count(*) AS n FROM builds WHERE state <> 'finished'`);
    return Number(rows[0]!.n) === 0;
  }, 180_000);

  const rows = await store.listBuilds({ limit: 10_000 });
  assert.equal(rows.length, BUILDS, 'no build lost, none added');
  assert.deepEqual(rows.filter((b) => b.result !== 'success').map((b) => [b.id, b.result, b.message]), [], 'every build succeeded');
  const lines = readFileSync(marks, 'utf8').trim().split('\n');
  const count = (kind: string, id: number) => lines.filter((l) => l === `${kind} ${id}`).length;
  for (const id of ids) assert.equal(count('end', id), 1, `build ${id} ran to its end exactly once`);
  const adopted = runningThere.filter((id) => rows.find((b) => b.id === id)!.attempt === 1 && count('start', id) === 1);
  const restarted = runningThere.filter((id) => !adopted.includes(id));
  t.diagnostic(`running on the killed master's workers: ${runningThere.length}; adopted: ${adopted.length}; restarted: ${restarted.length}`);
  t.diagnostic(`builds restarted anywhere: ${ids.filter((id) => count('start', id) > 1).length} of ${BUILDS}`);
  assert.deepEqual(restarted, [], 'the builds running on the killed master were adopted, not restarted');
  // The surviving masters say so on /readyz.
  const ready = (await (await fetch(`${masters[1]!.url}/readyz`)).json()) as { lease: { held: boolean; adopted: number } | null };
  assert.equal(ready.lease?.held, true);
  if (fault === 'SIGSTOP') {
    // The resumed master stepped down and joined again under a new id; none of the builds
    // it held when paused was finished by it.
    const back = await until('master 0 to join again', async () => {
      const r = await fetch(`${masters[0]!.url}/readyz`).then((x) => x.json() as Promise<{ lease: { holder: string; losses: number } | null }>, () => null);
      return r?.lease && r.lease.holder !== victim ? r.lease : null;
    }, 60_000);
    assert.equal(back.losses, 1);
    assert.match(masters[0]!.output(), /lost this master's lease/);
    assert.doesNotMatch(masters[0]!.output(), new RegExp(`build (${runningThere.join('|')}) \\S+ \\d+: not ended here`), 'it did not even try to end them');
  }
});
}
