// The tray's line to the agent, against a real master and a real worker agent (host executor).
import assert from 'node:assert/strict';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { test } from 'node:test';
import { startWorker } from '../worker/agent.js';
import { cleanup, tempDir, testMaster, until } from '../test/helpers/cluster.js';
import { AgentClient, applyTrayAction } from './agent-client.js';
import { idleReport } from './idle-report.js';
import { trayPresentation, trayStateOfAgent } from './tray-state.js';

test('the tray follows the agent: pause, snooze and resume from the menu; idle reports reach it', async (t) => {
  const dir = tempDir('app-agent');
  const m = await testMaster({ ticker: 'requires: { executor: host }\nsteps:\n  - run: "sleep 1; echo done"\n' });
  t.after(async () => { await m.close(); cleanup(dir); });
  assert.match(AgentClient.open(dir) as string, /no agent is running/);

  const w = await startWorker({ master: m.url, token: await m.token('desk'), dataDir: dir, executor: 'host', labels: [], log: () => undefined, idleSource: 'app', preferences: { when: 'idle', idleAfterMs: 60_000 } });
  t.after(() => w.close());
  const agent = AgentClient.open(dir);
  assert.ok(agent instanceof AgentClient, String(agent));
  await until('connected', async () => (await agent.status()).master.connected);

  // The app's idle feed decides: someone at the desk holds builds, a long idle lets them run.
  assert.equal(await agent.reportIdle(idleReport({ idleSeconds: 5, idleState: 'active', onBattery: false, suspended: false })), true);
  await until('held while in use', async () => !(await agent.status()).accepting);
  await agent.reportIdle(idleReport({ idleSeconds: 600, idleState: 'idle', onBattery: false, suspended: false }));
  await until('accepting when idle', async () => (await agent.status()).accepting);
  assert.equal(trayStateOfAgent(await agent.status()), 'idle');

  let s = await applyTrayAction('pause', agent);
  assert.equal(s?.state, 'paused');
  assert.equal(trayPresentation(trayStateOfAgent(s)).menu.some((i) => i.kind === 'action' && i.action === 'resume'), true);
  s = await applyTrayAction('resume', agent);
  assert.equal(s?.state, 'idle');
  s = await applyTrayAction('snooze', agent);
  assert.equal(s?.state, 'paused');
  assert.ok(s?.preferences.snoozeUntil && Date.parse(s.preferences.snoozeUntil) - Date.now() > 3_500_000);
  assert.equal(await applyTrayAction('quit', agent), null);
  await applyTrayAction('resume', agent);

  const link = await agent.signInUrl();
  assert.match(link, /^http:\/\/127\.0\.0\.1:\d+\/ui\/login\?ticket=/);
  assert.equal((await fetch(link, { redirect: 'manual' })).status, 303);
});

test('an agent that does not take idle reports says so; a forged control.json is refused', async (t) => {
  const dir = tempDir('app-agent');
  const m = await testMaster({});
  const w = await startWorker({ master: m.url, token: await m.token('desk2'), dataDir: dir, executor: 'host', labels: [], log: () => undefined, idleSource: 'none' });
  t.after(async () => { await w.close(); await m.close(); cleanup(dir); });
  const agent = AgentClient.open(dir) as AgentClient;
  assert.equal(await agent.reportIdle(idleReport({ idleSeconds: 1, idleState: 'active', onBattery: false, suspended: false })), false);
  assert.throws(() => idleReport({ idleSeconds: -1, idleState: 'active', onBattery: false, suspended: false }));
  const other = tempDir('app-agent');
  t.after(() => cleanup(other));
  writeFileSync(join(other, 'control.json'), JSON.stringify({ url: 'http://evil.example:80', secret: 'x', pid: 1 }));
  assert.match(AgentClient.open(other) as string, /not a loopback address/);
});
