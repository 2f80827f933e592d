import { test } from 'node:test';
import assert from 'node:assert/strict';
import { AuthThrottle } from './auth-throttle.js';

test('after too many failures an address waits out the window; others are unaffected', () => {
  const t = new AuthThrottle(3, 60_000);
  for (let i = 0; i < 3; i++) { assert.equal(t.blockedFor('a', 1000 + i), 0); t.fail('a', 1000 + i); }
  assert.equal(t.blockedFor('a', 2000), 59_000);
  assert.equal(t.blockedFor('b', 2000), 0);
  assert.equal(t.blockedFor('a', 61_000), 0, 'the oldest failure has left the window');
});

test('per name: failures for one name lock out only that address for that name; many addresses cannot brute force one name', () => {
  const t = new AuthThrottle(3, 60_000);
  t.succeeded('worker-host', 'w1', 500);
  for (let i = 0; i < 3; i++) t.failName('attacker', 'w1', 1000 + i);
  assert.match(t.blockedForName('attacker', 'w1', 2000).why, /too many failed logins as "w1" from attacker/);
  assert.equal(t.blockedForName('attacker', 'w2', 2000).waitMs, 0, 'another name from the same address');
  assert.equal(t.blockedForName('worker-host', 'w1', 2000).waitMs, 0, 'the same name from its own address');
  // 30 addresses guess w1 (10 × maxFailures): blocked for new addresses, not for the one that logged in as it.
  for (let a = 0; a < 30; a++) t.failName(`bot${a}`, 'w1', 3000 + a);
  assert.match(t.blockedForName('bot-new', 'w1', 4000).why, /as "w1" from many addresses/);
  assert.equal(t.blockedForName('worker-host', 'w1', 4000).waitMs, 0);
  // One address trying many names (5 × maxFailures) is blocked for all of them.
  for (let n = 0; n < 15; n++) t.failName('scanner', `n${n}`, 5000 + n);
  assert.match(t.blockedForName('scanner', 'fresh', 6000).why, /too many failed logins from scanner/);
});
