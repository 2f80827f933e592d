import { test } from 'node:test';
import assert from 'node:assert/strict';
import { EventBus } from './events.js';

test('EventBus: a listener that is not listening now (no dashboard connected) is not counted and gets nothing, so no event is made for nobody', () => {
  const bus = new EventBus();
  let open = false;
  const got: string[] = [];
  const always: string[] = [];
  const off = bus.subscribe((e) => got.push(e.type), () => open);
  assert.equal(bus.size, 0);
  bus.publish({ type: 'log', buildId: 1, data: 'x' });
  open = true;
  assert.equal(bus.size, 1);
  bus.publish({ type: 'log', buildId: 1, data: 'y' });
  bus.subscribe((e) => always.push(e.type));
  open = false;
  assert.equal(bus.size, 1, 'a listener without a condition always counts');
  bus.publish({ type: 'log', buildId: 1, data: 'z' });
  assert.deepEqual([got, always], [['log'], ['log']]);
  off();
  open = true;
  assert.equal(bus.size, 1);
});
