// [crowd] CPU time in the volunteers' credit: a real worker reports what its build used in
// `state finished`, and the master counts a claim only up to wall time × the cores granted.
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { test } from 'node:test';
import WebSocket from 'ws';
import type { BuildView, CreditDayView, VolunteerView } from '../protocol/api.js';
import { FEATURE_CPU_TIME, FEATURES_HEADER, MAX_CPU_MS, parseFeatures } from '../protocol/worker-features.js';
import type { WorkerHandle } from '../worker/agent.js';
import { CLI } from './helpers/cluster.js';
import { admin, cleanup, crowdMaster, identity, join, joinedWorker, rawWorker, until } from './helpers/crowd.js';

const BUSY = `
requires: { executor: host }
limits: { cpus: 1 }
steps:
  - run: i=0; while [ $i -lt 300000 ]; do i=$((i+1)); done
`;
const OPEN = 'enrollment: { mode: open, joinsPerHour: 100 }\n';

test('a real worker reports the CPU time its build used; the volunteer\'s and the farm\'s credit count it, within wall time × cores', async (t) => {
  const dirs: string[] = [];
  const workers: WorkerHandle[] = [];
  const m = await crowdMaster({ busy: BUSY }, OPEN, dirs);
  t.after(async () => { for (const w of workers) await w.close(); await m.close(); cleanup(...dirs); });
  const j = await join(m, { worker: 'ada-pc', who: identity(), displayName: 'Ada' });
  assert.equal(j.status, 201);
  workers.push(await joinedWorker(m, j.token, dirs));
  const b = await m.waitFinished(await m.force('busy'), 60_000);
  assert.equal(b.result, 'success');
  const ada = await until('Ada\'s credit', async () => {
    const v = (await admin<VolunteerView[]>(m, 'GET', '/api/v1/volunteers')).body.find((x) => x.displayName === 'Ada');
    return v && v.credit.builds === 1 ? v : null;
  });
  assert.ok(ada.credit.cpuMs > 0, `CPU time counted: ${ada.credit.cpuMs} ms`);
  const wall = Date.parse(b.finishedAt!) - Date.parse(b.startedAt!);
  assert.ok(ada.credit.cpuMs <= wall, `${ada.credit.cpuMs} ms of CPU within ${wall} ms on 1 core`);
  assert.equal(ada.workers![0]!.credit.cpuMs, ada.credit.cpuMs, 'per worker too');
  const farm = await m.get<CreditDayView[]>('/api/v1/credit');
  assert.equal(farm.at(-1)!.cpuMs, ada.credit.cpuMs, 'and on the farm\'s day');
  const listed = spawnSync(process.execPath, [CLI, 'volunteers', 'list', '--data', m.dataDir], { encoding: 'utf8' });
  assert.equal(listed.status, 0, listed.stderr);
  assert.match(listed.stdout, new RegExp(`\tAda\t.*\tbuilds=1\tcpu=${Math.round(ada.credit.cpuMs / 1000)}s\twall=`), 'crowdbake volunteers list shows it');
});

test('the master announces the cpu-time feature in its WebSocket upgrade answer (older workers ignore the header)', async (t) => {
  const dirs: string[] = [];
  const m = await crowdMaster({}, OPEN, dirs);
  t.after(async () => { await m.close(); cleanup(...dirs); });
  const ws = new WebSocket(`${m.url.replace('http', 'ws')}/api/v1/worker`);
  const header = await new Promise<string | string[] | undefined>((ok, fail) => {
    ws.once('upgrade', (res) => ok(res.headers[FEATURES_HEADER]));
    ws.once('error', fail);
  });
  ws.terminate();
  assert.ok(parseFeatures(header).has(FEATURE_CPU_TIME), `header: ${String(header)}`);
});

test('adversary: a worker claiming more CPU time than wall time × the cores granted is counted only that much, and the log says so; a claim past the protocol\'s bound is a bad frame naming cpuMs', async (t) => {
  const dirs: string[] = [];
  const m = await crowdMaster({ busy: BUSY }, OPEN, dirs);
  t.after(async () => { await m.close(); cleanup(...dirs); });
  const j = await join(m, { worker: 'mallory-pc', who: identity(), displayName: 'Mallory' });
  assert.equal(j.status, 201);
  const w = await rawWorker(m, 'mallory-pc', j.token);
  t.after(() => w.ws.terminate());

  // Past the schema's bound: refused as a bad frame, the build stays Mallory's to finish.
  const first = await m.force('busy');
  await until('the assignment', () => w.inbox.find((f) => f.type === 'assign' && f.buildId === first));
  w.ws.send(JSON.stringify({ type: 'accepted', buildId: first, attempt: 1 }));
  w.ws.send(JSON.stringify({ type: 'state', buildId: first, attempt: 1, state: 'finished', result: 'success', message: null, cpuMs: MAX_CPU_MS + 1 }));
  const bad = await until('the refusal', () => w.inbox.find((f) => f.type === 'error' && /cpuMs/.test(f.message ?? '')));
  assert.equal(bad.fatal, false);
  assert.equal((await m.get<BuildView>(`/api/v1/builds/${first}`)).state, 'running', 'a refused frame changes nothing');

  // Within the schema but far above wall × 1 core (the builder's limits.cpus; the worker offers 1).
  const claimed = 10 * 86_400_000;
  w.ws.send(JSON.stringify({ type: 'state', buildId: first, attempt: 1, state: 'finished', result: 'success', message: null, cpuMs: claimed }));
  const b = await m.waitFinished(first, 20_000);
  const wall = Date.parse(b.finishedAt!) - Date.parse(b.startedAt!);
  const v = await until('Mallory\'s credit', async () => {
    const x = (await admin<VolunteerView[]>(m, 'GET', '/api/v1/volunteers')).body.find((y) => y.displayName === 'Mallory');
    return x && x.credit.builds === 1 ? x : null;
  });
  assert.ok(v.credit.cpuMs <= wall + 5, `counted ${v.credit.cpuMs} ms for ${wall} ms of wall time on 1 core`);
  assert.ok(v.credit.cpuMs < claimed);
  const log = await (await fetch(`${m.url}/api/v1/builds/${first}/log`)).text();
  assert.match(log, new RegExp(`worker mallory-pc reported ${claimed} ms of CPU time; counted \\d+ ms \\(wall time × 1 cores granted\\)`));
});
