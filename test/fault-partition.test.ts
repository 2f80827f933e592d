import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync, spawn } from 'node:child_process';
import type { BuildView, WorkerView } from '../protocol/api.js';
import { startWorker } from '../worker/agent.js';
import { CLI, cleanup, tempDir, testMaster, until } from './helpers/cluster.js';

// Fault suite: a worker in its own network namespace, joined to the master by a veth pair
// with addresses used nowhere else (10.213.N.0/30). Cutting the link partitions it: a short
// cut must leave the build running with its log whole; a long one must requeue the build
// elsewhere, with no line of the log lost or repeated, and stop it on the cut-off worker.
// Needs root (ip netns); the test runs as root here and in CI.

const ip = (...args: string[]) => execFileSync('ip', args, { stdio: ['ignore', 'pipe', 'pipe'] }).toString();
const LINES = 100;
const COUNT = `
requires: { executor: host }
steps:
  - run: for i in $(seq 1 ${LINES}); do echo "line $i"; sleep 0.08; done
`;

/** A namespace with one end of a veth pair; returns the two addresses and how to cut/heal the link. */
function netns(t: { after: (fn: () => void) => void }) {
  const n = process.pid % 250;
  const ns = `cbpart${process.pid}`;
  const host = `cbh${process.pid}`.slice(0, 15);
  const peer = `cbn${process.pid}`.slice(0, 15);
  ip('netns', 'add', ns);
  t.after(() => {
    try { ip('link', 'del', host); } catch { /* gone with the namespace */ }
    try { ip('netns', 'del', ns); } catch { /* already gone */ }
  });
  ip('link', 'add', host, 'type', 'veth', 'peer', 'name', peer);
  ip('link', 'set', peer, 'netns', ns);
  ip('addr', 'add', `10.213.${n}.1/30`, 'dev', host);
  ip('link', 'set', host, 'up');
  ip('-n', ns, 'addr', 'add', `10.213.${n}.2/30`, 'dev', peer);
  ip('-n', ns, 'link', 'set', peer, 'up');
  ip('-n', ns, 'link', 'set', 'lo', 'up');
  return {
    ns, hostAddress: `10.213.${n}.1`,
    cut: () => ip('-n', ns, 'link', 'set', peer, 'down'),
    heal: () => ip('-n', ns, 'link', 'set', peer, 'up'),
  };
}

/** The numbers of the `line N` output in a log section, in order. */
const lineNumbers = (text: string) => [...text.matchAll(/^line (\d+)$/gm)].map((x) => Number(x[1]));
const oneToN = (n: number) => Array.from({ length: n }, (_, i) => i + 1);

test('fault: a worker cut off by a network partition: a short cut resumes, a long one requeues; the log has no gap or repeat', async (t) => {
  const started = Date.now();
  const net = netns(t);
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
