import { test } from 'node:test';
import assert from 'node:assert/strict';
import { setImmediate as turn } from 'node:timers/promises';
import { builder, memoryFarm } from '../test/helpers/in-memory-farm.js';

// The build lifecycle through the real coordinator, worker hub and worker link, joined by an
// in-memory socket pair (test/helpers/linked-sockets.ts): no port, no process, milliseconds.

test('in memory: queued builds go to the worker oldest first, one slot at a time, each finished once', async (t) => {
  const farm = await memoryFarm([builder('b')]);
  t.after(() => farm.close());
  const ids: number[] = [];
  for (let i = 0; i < 3; i++) ids.push((await farm.coordinator.requestBuild('b', {})).id);
  const w = await farm.worker('w1');
  for (const id of ids) {
    const a = await w.next('assign');
    assert.equal(a.buildId, id, 'oldest first');
    assert.equal(a.attempt, 1);
    // One slot: nothing else is assigned while this build runs.
    assert.equal(w.received.filter((m) => m.type === 'assign').length, ids.indexOf(id) + 1);
    await w.link.send({ type: 'accepted', buildId: id, attempt: 1 });
    await w.link.sendLog(id, 1, `hello from ${id}\n`);
    await w.link.send({ type: 'state', buildId: id, attempt: 1, state: 'finished', result: 'success', message: null });
  }
  await w.link.send({ type: 'state', buildId: ids[0]!, attempt: 1, state: 'finished', result: 'failure', message: 'again' });
  await until(async () => (await farm.store.getBuild(ids[2]!))?.state === 'finished');
  for (const id of ids) {
    const row = (await farm.store.getBuild(id))!;
    assert.equal(row.result, 'success', `build ${id}: a second "finished" changed nothing`);
    assert.equal(row.attempt, 1);
    assert.match(await farm.log(id), new RegExp(`hello from ${id}`));
  }
  assert.equal(farm.coordinator.queuedCount(), 0);
});

test('in memory: a worker lost mid-build gets it back as attempt 2; attempt 1\'s messages are fenced off', async (t) => {
  const farm = await memoryFarm([builder('b')]);
  t.after(() => farm.close());
  const { id } = await farm.coordinator.requestBuild('b', {});
  const w = await farm.worker('w1');
  const first = await w.next('assign');
  assert.equal(first.attempt, 1);
  await w.link.sendLog(id, 1, 'attempt one\n');
  await until(async () => (await farm.log(id)).includes('attempt one'));
  // The connection dies (a dead TCP connection: no close frame); the link dials again.
  w.masterEnd().terminate();
  const second = await w.next('assign');
  assert.equal(second.buildId, id);
  assert.equal(second.attempt, 2, 'requeued as the next attempt');
  // Late frames of attempt 1 (a worker that did not notice) must not touch the build.
  await w.link.sendLog(id, 1, 'STALE LOG\n');
  await w.link.send({ type: 'step', buildId: id, attempt: 1, index: 0, name: 'x', state: 'finished', result: 'failure', exitCode: 3 });
  await w.link.send({ type: 'state', buildId: id, attempt: 1, state: 'finished', result: 'failure', message: 'stale' });
  await w.link.sendLog(id, 2, 'attempt two\n');
  await w.link.send({ type: 'state', buildId: id, attempt: 2, state: 'finished', result: 'success', message: null });
  await until(async () => (await farm.store.getBuild(id))?.state === 'finished');
  const row = (await farm.store.getBuild(id))!;
  assert.equal(row.result, 'success');
  assert.equal(row.attempt, 2);
  const log = await farm.log(id);
  assert.match(log, /attempt one/);
  assert.match(log, /build requeued \(attempt 1 of 3\)/);
  assert.match(log, /attempt two/);
  assert.doesNotMatch(log, /STALE LOG/);
  const steps = await farm.store.listSteps([id]);
  assert.notEqual(steps[0]?.exitCode, 3, 'the stale step was not stored');
});

test('in memory: a master that does not read holds the worker\'s log output (backpressure), and loses none of it', async (t) => {
  const farm = await memoryFarm([builder('b')]);
  t.after(() => farm.close());
  const { id } = await farm.coordinator.requestBuild('b', {});
  const w = await farm.worker('w1');
  await w.next('assign');
  w.masterEnd().pauseReading();
  const chunk = `${'x'.repeat(64 * 1024 - 1)}\n`;
  let held: Promise<void> | null = null;
  let sent = 0;
  // Under the high-water mark (1 MiB) sendLog answers at once; past it, it hands back a promise.
  while (!held) {
    const r = w.link.sendLog(id, 1, chunk);
    sent++;
    if (r) held = r;
    assert.ok(sent < 64, 'sendLog never pushed back');
  }
  assert.ok(w.workerEnd().bufferedAmount > 1024 * 1024);
  let released = false;
  void held.then(() => { released = true; });
  for (let i = 0; i < 20; i++) await turn();
  assert.equal(released, false, 'the worker is held while the master does not read');
  w.masterEnd().resumeReading();
  await held;
  await w.link.send({ type: 'state', buildId: id, attempt: 1, state: 'finished', result: 'success', message: null });
  await until(async () => (await farm.store.getBuild(id))?.state === 'finished');
  assert.equal((await farm.log(id)).split(chunk).length - 1, sent, 'every chunk is in the log');
});

async function until(check: () => Promise<boolean>): Promise<void> {
  for (let i = 0; i < 10_000; i++) {
    if (await check()) return;
    await turn();
  }
  throw new Error('condition never met');
}

test('in memory, log-ack: text is placed by its offset — a repeat is dropped, an overlap trimmed, a gap noted once an attempt — and what is stored is acknowledged (adversary: a worker sending offsets of its own choosing)', async (t) => {
  const farm = await memoryFarm([builder('b')], { ackedLogs: true });
  t.after(() => farm.close());
  const { id } = await farm.coordinator.requestBuild('b', {});
  const w = await farm.worker('w1');
  await w.next('assign');
  await w.link.send({ type: 'accepted', buildId: id, attempt: 1 });
  // The link reads acknowledgements itself (they never reach the scripted worker): heard on its socket.
  const acks: number[] = [];
  w.workerEnd().on('message', (d: unknown) => {
    const m = JSON.parse(String(d)) as { type: string; offset?: number };
    if (m.type === 'logAck') acks.push(m.offset!);
  });
  // Frames written straight to the socket: the worker's link would number them honestly.
  const frame = (offset: number, text: string) => w.workerEnd().send(`L${id} 1 ${offset}\n${text}`);
  frame(0, 'one\n');
  frame(0, 'one\n'); // sent again (as after a fail-over): dropped
  frame(2, 'e\ntwo\n'); // overlaps: only "two\n" is new
  frame(100, 'far\n'); // a gap of 92: noted
  for (let i = 0; i < 50; i++) frame(200 + i * 10, 'x'); // more gaps: not noted again
  await until(async () => acks.includes(691));
  await w.link.send({ type: 'state', buildId: id, attempt: 1, state: 'finished', result: 'success', message: null });
  await until(async () => (await farm.store.getBuild(id))?.state === 'finished');
  const whole = await farm.log(id);
  const log = whole.slice(whole.indexOf('one'));
  assert.equal(log, `one\ntwo\n\n*** 92 characters of this log never reached the masters (later gaps of this attempt are not noted) ***\nfar\n${'x'.repeat(50)}`);
  assert.deepEqual(acks, [...acks].sort((x, y) => x - y), 'acknowledgements only grow');
  assert.ok(acks.includes(4) && acks.includes(8) && acks.includes(104), `acknowledged: ${acks.join(',')}`);
});

test('in memory: a log frame\'s text is stored as the bytes that came when they are UTF-8, with replacement characters when not (an in-memory socket does not check them as ws does)', async (t) => {
  const farm = await memoryFarm([builder('b')]);
  t.after(() => farm.close());
  const { id } = await farm.coordinator.requestBuild('b', {});
  const w = await farm.worker('w1');
  await w.next('assign');
  await w.link.send({ type: 'accepted', buildId: id, attempt: 1 });
  await w.link.sendLog(id, 1, 'héllo 😀 日本\n');
  // Raw bytes in a text frame: "a", a stray continuation byte, "b", a cut 3-byte sequence, "\n".
  w.workerEnd().send(Buffer.concat([Buffer.from(`L${id} 1\n`), Buffer.from([0x61, 0x80, 0x62, 0xe2, 0x82, 0x0a])]), { binary: false });
  await w.link.sendLog(id, 1, 'end\n');
  await until(async () => (await farm.log(id)).includes('end'));
  assert.equal((await farm.log(id)).replace(/^\*\*\* attempt 1 on worker w1 .*\n/, ''), 'héllo 😀 日本\na\ufffdb\ufffd\nend\n');
});
