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
