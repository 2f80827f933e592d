import { test } from 'node:test';
import assert from 'node:assert/strict';
import { agentStatus, type StatusView } from './agent-status.js';
import type { Running } from './build-intake.js';
import { FreezeGate } from './freeze-gate.js';
import type { Decision } from './policy.js';
import { PreferencesSchema } from '../protocol/control-api.js';

const DEFAULT_PREFERENCES = PreferencesSchema.parse({});

const decision: Decision = { run: true, freeze: false, cpuCap: null, paused: false, reason: 'idle', recheckInMs: null };
const project = (connected: boolean, running = new Map<number, Running>()) => ({
  name: 'p', url: 'wss://m.example', worker: 'w1', share: 2, project: { name: 'p', master: 'https://m.example', token: 't', share: 2 },
  link: { connected } as StatusView['projects'][number]['link'], running, lastOffer: { accepting: true, reason: '' }, usedMs: 4_400,
});
const build = (gate = new FreezeGate()): Running => ({ started: 0, historyId: 3, attempt: 1, builder: 'b', startedAt: 'then', controller: new AbortController(), gate, done: Promise.resolve() });
const view = (over: Partial<StatusView>): StatusView => ({
  name: 'w1', executors: ['host'], decision, idleSource: { name: 'x11', why: 'XScreenSaver' }, lastIdleMs: Infinity, temperatureC: null,
  preferences: DEFAULT_PREFERENCES, builds: [], projects: [project(true)], usedMs: (c) => c.usedMs, ...over,
});

test('the state: offline without a connected master, else paused, frozen, busy or idle, in that order', async () => {
  assert.equal(agentStatus(view({ projects: [project(false)] })).state, 'offline');
  assert.equal(agentStatus(view({ projects: [project(false), project(true)] })).state, 'idle', 'one connected master is enough');
  const frozen = new FreezeGate();
  await frozen.freeze();
  assert.equal(agentStatus(view({ builds: [[1, build(frozen)]], decision: { ...decision, paused: true } })).state, 'paused');
  assert.equal(agentStatus(view({ builds: [[1, build()], [2, build(frozen)]] })).state, 'frozen');
  assert.equal(agentStatus(view({ builds: [[1, build()]] })).state, 'busy');
});

test('what it reports: an unknown idle time as null, the CPU cap only while not frozen, each project\'s share and seconds used', () => {
  const s = agentStatus(view({ decision: { ...decision, cpuCap: 2 }, builds: [[9, build()]] }));
  assert.equal(s.idleMs, null);
  assert.equal(s.cpuCap, 2);
  assert.equal(agentStatus(view({ decision: { ...decision, freeze: true, cpuCap: 2 } })).cpuCap, null);
  assert.deepEqual(s.current, [{ buildId: 9, builder: 'b', frozen: false, startedAt: 'then', historyId: 3 }]);
  assert.deepEqual(s.projects, [{ name: 'p', master: 'https://m.example', worker: 'w1', share: 2, connected: true, running: 0, usedSeconds: 4, offered: true }]);
  assert.deepEqual(s.master, { url: 'wss://m.example', connected: true });
});
