import { test } from 'node:test';
import assert from 'node:assert/strict';
import { SlotOffers, type Availability, type OfferedProject } from './slot-offers.js';

interface Fake extends OfferedProject { sent: Availability[]; used: number; link: { connected: boolean } }

function project(name: string, share: number, used = 0, connected = true): Fake {
  const p: Fake = {
    name, share, used, link: { connected }, lastOffer: null, availability: { accepting: false, reason: 'starting' }, sent: [],
    send: (m) => { p.sent.push({ accepting: m.accepting, reason: m.reason }); },
  };
  return p;
}

function offers(projects: Fake[], over: { run?: boolean; busy?: number; maxBuilds?: number; draining?: boolean } = {}) {
  const state = { run: over.run ?? true, busy: over.busy ?? 0, draining: over.draining ?? false };
  const lines: string[] = [];
  const o = new SlotOffers({
    decision: () => ({ run: state.run, reason: state.run ? 'the desktop is away' : 'the volunteer is using the computer' }),
    projects: () => projects, busy: () => state.busy, maxBuilds: over.maxBuilds ?? 1, usedMs: (p) => p.used,
    draining: () => state.draining, log: (l) => lines.push(l), offerMs: 1000,
  });
  return { o, state, lines };
}

test('one project: it is offered the slot whenever builds may run, told once, again when forced or changed', () => {
  const a = project('a', 1);
  const { o, state } = offers([a]);
  o.offer();
  assert.deepEqual(a.sent, [{ accepting: true, reason: 'the desktop is away' }]);
  o.offer();
  assert.equal(a.sent.length, 1, 'the same answer is not sent again');
  o.offer(true);
  assert.equal(a.sent.length, 2, 'forced');
  state.run = false;
  o.offer();
  assert.deepEqual(a.sent.at(-1), { accepting: false, reason: 'the volunteer is using the computer' });
  o.close();
});

test('several projects: the largest share-weighted deficit is offered; the offer moves on after OFFER_MS without work, round and round', (t) => {
  t.mock.timers.enable({ apis: ['setTimeout'] });
  // a has used more than its share (1 of 3); b (share 2) is owed the slot.
  const a = project('a', 1, 10_000);
  const b = project('b', 2, 0);
  const { o, lines } = offers([a, b]);
  o.offer();
  assert.deepEqual(b.availability, { accepting: true, reason: 'the desktop is away' });
  assert.deepEqual(a.availability, { accepting: false, reason: 'another project\'s turn (resource share)' });
  assert.deepEqual(lines, ['next build slot offered to b']);
  // b assigns nothing: after the offer time a gets the slot, then b again (the round starts over).
  t.mock.timers.tick(1000);
  assert.equal(a.availability.accepting, true);
  assert.equal(b.availability.accepting, false);
  t.mock.timers.tick(1000);
  assert.equal(b.availability.accepting, true, 'everyone skipped: the round starts again with the largest deficit');
  assert.deepEqual(lines, ['next build slot offered to b', 'next build slot offered to a', 'next build slot offered to b']);
  o.close();
  t.mock.timers.tick(5000);
  assert.equal(lines.length, 3, 'closed: the offer stays where it was');
});

test('several projects: a disconnected one is never offered and sent nothing; all slots in use offers nobody, saying why', () => {
  const a = project('a', 1, 0, false);
  const b = project('b', 1, 5000);
  const { o, state } = offers([a, b], { maxBuilds: 2 });
  o.offer();
  assert.equal(b.availability.accepting, true, 'a is owed more but not connected');
  assert.deepEqual(a.sent, [], 'nothing goes to a project that is not connected');
  state.busy = 2;
  o.offer();
  assert.deepEqual(b.sent.at(-1), { accepting: false, reason: 'all 2 build slot(s) of this computer are in use' });
  o.close();
});

test('while the agent drains, nothing is offered or sent (the masters were told `drain`)', () => {
  const a = project('a', 1);
  const { o } = offers([a], { draining: true });
  o.offer(true);
  assert.deepEqual(a.sent, []);
  assert.deepEqual(a.availability, { accepting: false, reason: 'starting' }, 'left as it was');
  o.close();
});
