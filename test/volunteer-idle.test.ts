import { test } from 'node:test';
import assert from 'node:assert/strict';
import type { BuildView } from '../protocol/api.js';
import { readFileSync } from 'node:fs';
import type { HistoryEntry } from '../protocol/control-api.js';
import { startWorker } from '../worker/agent.js';
import { cleanup, tempDir, testMaster, until, whenSteady } from './helpers/cluster.js';
import { startXvfb } from './helpers/xvfb.js';

// Under a real X server, input made with xdotool: the build waits for idle, runs, freezes
// the moment there is input (the master shows it), makes no progress while frozen, and
// thaws once the desktop is idle again.
const COUNTER = `
requires: { executor: container }
steps:
  - run: "i=0; while [ $i -lt 40 ]; do echo tick $i; i=$((i+1)); sleep 0.1; done; echo all done"
limits: { time: 2m }
`;

test('idle-gated build under Xvfb: waits for idle, freezes on input, thaws after the idle time', async (t) => {
  const x = await startXvfb();
  const m = await testMaster({ counter: COUNTER });
  const dir = tempDir('w');
  const saved = process.env.DISPLAY;
  process.env.DISPLAY = x.display;
  // Someone is at the desk from before the worker starts until the build is seen waiting: the
  // worker's start (podman checks) can outlast the idle time, and a first look at an idle desk
  // would take the build at once.
  const atDesk = setInterval(() => x.input(), 200);
  x.input();
  const w = await startWorker({
    master: m.url, token: await m.token('desk'), dataDir: dir, executor: 'container', labels: [], log: () => undefined,
    idleSource: 'x11', preferences: { when: 'idle', idleAfterMs: 1500 },
  });
  process.env.DISPLAY = saved;
  t.after(async () => { clearInterval(atDesk); await w.close(); await m.close(); x.close(); cleanup(dir); });
  const build = () => m.get<BuildView>(`/api/v1/builds/${id}`);
  const log = () => fetch(`${m.url}/api/v1/builds/${id}/log`).then((r) => r.text());
  const ticks = async () => (await log()).match(/^tick \d+$/gm)?.length ?? 0;

  assert.equal(w.status().idleSource.name, 'x11');
  await until('the worker to see the desk in use', () => /desktop is in use/.test(w.status().reason), 20_000);
  const id = await m.force('counter');
  // Someone is at the desk: the build waits.
  await new Promise((r) => setTimeout(r, 1000));
  assert.equal((await build()).state, 'queued');
  assert.equal(w.status().accepting, false);
  assert.match(w.status().reason, /in use/);
  clearInterval(atDesk);

  // They leave: after 1.5 s without input the build starts.
  await until('the build to run', async () => (await ticks()) >= 3, 20_000);

  // They come back: the build freezes, and the master says so.
  const touched = Date.now();
  x.input();
  await until('frozen on the master', async () => (await build()).state === 'frozen', 20_000);
  // How fast is bench/'s to say (idle-freeze); here only that it froze.
  t.diagnostic(`input -> master shows frozen: ${Date.now() - touched} ms`);
  assert.equal(w.status().state, 'frozen');

  // While they keep working, nothing moves (once what was in flight when it froze has landed).
  const before = await whenSteady('the frozen build\'s log', ticks, () => x.input());
  for (let i = 0; i < 4; i++) { x.input(); await new Promise((r) => setTimeout(r, 300)); }
  assert.equal(await ticks(), before, 'no progress while frozen');
  assert.equal((await build()).state, 'frozen');

  // They leave again: it thaws and finishes.
  const done = await m.waitFinished(id, 60_000);
  assert.equal(done.result, 'success', await log());
  assert.match(await log(), /all done/);
  const history = await fetch(`${w.controlUrl}/api/v1/history`, { headers: { authorization: `Bearer ${controlSecret(dir)}` } }).then((r) => r.json()) as HistoryEntry[];
  assert.equal(history[0]?.result, 'success');
  assert.ok((history[0]?.frozenMs ?? 0) >= 1000, `frozen for ${history[0]?.frozenMs} ms`);
});

function controlSecret(dir: string): string {
  return (JSON.parse(readFileSync(`${dir}/control.json`, 'utf8')) as { secret: string }).secret;
}
