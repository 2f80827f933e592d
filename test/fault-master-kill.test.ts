import { test } from 'node:test';
import assert from 'node:assert/strict';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { openStore } from '../master/store/open-store.js';
import { TEST_POSTGRES_ENV, TestDatabases } from '../master/store/postgres-test-db.js';
import { createWorkerToken } from '../master/tokens.js';
import { startWorker, type WorkerHandle } from '../worker/agent.js';
import { cleanup, tempDir, until, writeBuilder } from './helpers/cluster.js';
import { freePort, MasterProcess } from './helpers/master-process.js';

// Fault suite: the master process is SIGKILLed again and again while a flood of build
// requests arrives and workers run them. Afterwards the store must hold every build whose id
// was answered, each exactly once and finished exactly once, with sane attempt numbers. Runs
// on SQLite, and on PostgreSQL too when CROWDBAKE_TEST_POSTGRES names a server (CI starts one).
// CROWDBAKE_FAULT_MASTER_KILLS (default 5) and CROWDBAKE_FAULT_FLOOD (default 150); 20 and 500 for the figures in docs/SECURITY.md.
const KILLS = Number(process.env.CROWDBAKE_FAULT_MASTER_KILLS ?? 5);
const FLOOD = Number(process.env.CROWDBAKE_FAULT_FLOOD ?? 150);
const WORKERS = 4;
const MAX_ATTEMPTS = 50;

const postgres = process.env[TEST_POSTGRES_ENV];
for (const kind of ['sqlite', ...(postgres ? ['postgres'] : [])] as const) {
  test(`fault (${kind}): master SIGKILLed ${KILLS} times during a ${FLOOD}-build flood: none lost, none finished twice`, async (t) => {
    const started = Date.now();
    const dir = tempDir('mkill');
    const configDir = join(dir, 'config');
    const dataDir = join(dir, 'data');
    let storeUrl = join(dataDir, 'crowdbake.db');
    if (kind === 'postgres') {
      const dbs = new TestDatabases(postgres!);
      t.after(() => dbs.dropAll());
      storeUrl = await dbs.create();
    }
    writeBuilder(configDir, 'quick', 'requires: { executor: host }\nsteps:\n  - run: echo "build $CROWDBAKE_BUILD_ID"\n');
    writeFileSync(join(configDir, 'crowdbake.yml'), `maxAttempts: ${MAX_ATTEMPTS}\n`);
    const master = new MasterProcess(configDir, dataDir, '127.0.0.1', await freePort(), kind === 'postgres' ? ['--store', storeUrl, '--lease', '4s'] : []);
    const workers: WorkerHandle[] = [];
    const workerDirs: string[] = [];
    t.after(async () => {
      for (const w of workers) await w.close();
      await master.stop('SIGKILL');
      cleanup(dir, ...workerDirs);
    });
    await master.start();
    const admin = master.adminToken;
    {
      const store = await openStore(storeUrl);
      const tokens = [];
      for (let i = 0; i < WORKERS; i++) tokens.push(await createWorkerToken(store, `mw${i}`, []));
      await store.close();
      for (const token of tokens) {
        const wd = tempDir('mw');
        workerDirs.push(wd);
        workers.push(await startWorker({ preferences: { when: 'always' }, idleSource: 'none', master: master.url, token, dataDir: wd,
          executor: 'host', labels: [], log: () => undefined, backoff: { minMs: 50, maxMs: 400 } }));
      }
    }

    // The flood: 8 clients post until FLOOD requests have been made. A refused connection (the
    // master is down) is retried; a request cut off mid-way may or may not have been stored.
    const answered = new Map<string, number>();
    const cutOff = new Set<string>();
    let next = 0;
    let refusedRetries = 0;
    const client = async () => {
      while (next < FLOOD) {
        const reason = `flood-${next++}`;
        for (;;) {
          try {
            const r = await fetch(`${master.url}/api/v1/builders/quick/builds`, {
              method: 'POST', headers: { authorization: `Bearer ${admin}`, 'content-type': 'application/json' }, body: JSON.stringify({ reason }),
            });
            const body = (await r.json()) as { id?: number; error?: string };
            assert.equal(r.status, 201, body.error);
            answered.set(reason, body.id!);
            break;
          } catch (e) {
            const code = ((e as Error).cause as { code?: string } | undefined)?.code;
            if (code === 'ECONNREFUSED') { refusedRetries++; await new Promise((ok) => setTimeout(ok, 20)); continue; }
            if (e instanceof assert.AssertionError) throw e;
            cutOff.add(reason);
            break;
          }
        }
      }
    };
    let rng = 12345;
    const random = () => ((rng = (rng * 1103515245 + 12345) % 2 ** 31) / 2 ** 31);
    const restartTimes: number[] = [];
    const killer = async () => {
      for (let k = 0; k < KILLS; k++) {
        await new Promise((ok) => setTimeout(ok, 150 + random() * 900));
        await master.stop('SIGKILL');
        const t0 = Date.now();
        await master.start();
        restartTimes.push(Date.now() - t0);
      }
    };
    await Promise.all([killer(), ...Array.from({ length: 8 }, client)]);
    const floodMs = Date.now() - started;

    type Row = { id: number; state: string };
    await until('every build to finish', async () => {
      const r = await fetch(`${master.url}/api/v1/builds?limit=1000`).then((x) => x.json() as Promise<Row[]>, () => null);
      return r !== null && r.length >= answered.size && r.every((b) => b.state === 'finished');
    }, 180_000);
    // The logs as the master serves them (files on SQLite, rows of the shared store on PostgreSQL).
    const logs = new Map<number, string>();
    const listed = await fetch(`${master.url}/api/v1/builds?limit=1000`).then((x) => x.json() as Promise<Row[]>);
    for (const { id } of listed) logs.set(id, await fetch(`${master.url}/api/v1/builds/${id}/log`).then((r) => r.text()));
    await master.stop('SIGTERM');

    // Now the store itself, behind the master's back.
    const store = await openStore(storeUrl);
    try {
      const rows = await store.listBuilds({ limit: 100_000 });
      const byReason = new Map<string, number>();
      for (const b of rows) byReason.set(b.reason!, (byReason.get(b.reason!) ?? 0) + 1);
      assert.deepEqual([...byReason].filter(([, n]) => n > 1), [], 'no request stored twice');
      for (const [reason, id] of answered) assert.equal(rows.find((b) => b.id === id)?.reason, reason, `answered build ${id} is in the store`);
      for (const b of rows) assert.ok(answered.has(b.reason!) || cutOff.has(b.reason!), `build ${b.id} (${b.reason}) was requested`);
      const notDone = rows.filter((b) => b.state !== 'finished' || b.result !== 'success' || !b.finishedAt);
      assert.deepEqual(notDone.map((b) => [b.id, b.state, b.result, b.message]), [], 'every build finished once, successfully');
      let requeued = 0;
      let adopted = 0;
      for (const b of rows) {
        assert.ok(b.attempt >= 1 && b.attempt <= MAX_ATTEMPTS, `build ${b.id}: attempt ${b.attempt}`);
        const log = logs.get(b.id) ?? '';
        const headers = [...log.matchAll(/^\*\*\* attempt (\d+) on worker /gm)].map((x) => Number(x[1]));
        const requeues = [...log.matchAll(/build requeued \(attempt (\d+) of \d+\)/g)].map((x) => Number(x[1]));
        // (On PostgreSQL, any master's reaping says it: the master holding it was lost.)
        const restarts = new Set([...log.matchAll(/(?:the master restarted while it ran|the master holding it was lost \([^)]*\) while it ran, and its worker did not come back); build requeued \(attempt (\d+) of \d+\)/g)].map((x) => Number(x[1])));
        // Every attempt but the last was requeued once, in order, and the last one ran.
        assert.deepEqual(requeues, Array.from({ length: b.attempt - 1 }, (_, i) => i + 1), `build ${b.id} requeues:\n${log}`);
        // Every attempt has its header, except one whose master was killed between storing the
        // attempt and writing its header (two adjacent synchronous writes): its requeue note says
        // the master restarted, and the attempt never reached a worker.
        const missing = requeues.filter((n) => !headers.includes(n));
        assert.ok(missing.every((n) => restarts.has(n)), `build ${b.id}: attempts ${missing.join(', ')} have no header:\n${log}`);
        assert.deepEqual(headers, [...requeues.filter((n) => !missing.includes(n)), b.attempt], `build ${b.id} attempts:\n${log}`);
        // The last attempt's part of the log: from its header (an adoption's note inside it is not a new attempt).
        const last = log.slice(log.lastIndexOf(`*** attempt ${b.attempt} on worker `));
        if (/\*\*\* attempt \d+ adopted by master /.test(last)) adopted++;
        assert.equal(last.match(new RegExp(`^build ${b.id}$`, 'gm'))?.length, 1, `build ${b.id} output:\n${log}`);
        assert.equal(last.match(/^build success$/gm)?.length, 1, `build ${b.id} result line:\n${log}`);
        if (b.attempt > 1) requeued++;
      }
      const answeredIds = [...answered.values()];
      assert.equal(new Set(answeredIds).size, answeredIds.length, 'no id answered twice');
      console.log(`fault-master-kill (${kind}): ${KILLS} SIGKILLs, ${FLOOD} requests (${answered.size} answered, ${cutOff.size} cut off by a kill, `
        + `${refusedRetries} refused connections retried), ${rows.length} builds stored, ${rows.length - notDone.length} finished once, `
        + `0 lost, ${requeued} rerun after a kill, ${adopted} adopted with their whole log; restart ${Math.min(...restartTimes)}-${Math.max(...restartTimes)} ms; `
        + `flood ${(floodMs / 1000).toFixed(1)} s, total ${((Date.now() - started) / 1000).toFixed(1)} s`);
    } finally {
      await store.close();
    }
  });
}
