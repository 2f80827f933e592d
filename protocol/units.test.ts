import { test } from 'node:test';
import assert from 'node:assert/strict';
import { parseDuration, parseSize } from './units.js';

test('durations parse to milliseconds', () => {
  assert.equal(parseDuration('500ms'), 500);
  assert.equal(parseDuration('30s'), 30_000);
  assert.equal(parseDuration('5m'), 300_000);
  assert.equal(parseDuration('2h'), 7_200_000);
  assert.equal(parseDuration(3), 3000);
  assert.match(String(parseDuration('5 minutes')), /not a duration/);
  assert.match(String(parseDuration('-1s')), /not a duration/);
});

test('sizes parse to bytes', () => {
  assert.equal(parseSize('512m'), 512 * 1024 ** 2);
  assert.equal(parseSize('4g'), 4 * 1024 ** 3);
  assert.equal(parseSize('100'), 100);
  assert.match(String(parseSize('4 gallons')), /not a size/);
});

test('durations format without 60s or 60m remainders', async () => {
  const { formatDuration } = await import('./units.js');
  assert.equal(formatDuration(3_599_900), '1h0m');
  assert.equal(formatDuration(3_599_400), '59m59s');
  assert.equal(formatDuration(59_700), '1m0s');
  assert.equal(formatDuration(9_950), '9.9s');
  assert.equal(formatDuration(250), '250ms');
});
