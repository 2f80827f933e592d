import { test } from 'node:test';
import assert from 'node:assert/strict';
import { formatWeekText, parseWeekText } from './week-text.js';

test('a weekly schedule as typed: ranges, lists, any, never, several windows', () => {
  const night = [{ start: '18:00', end: '08:00' }];
  assert.deepEqual(parseWeekText('mon,tue,thu-fri 18:00-08:00; sat,sun any; wed never'), { mon: night, tue: night, thu: night, fri: night, wed: [] });
  assert.equal(formatWeekText(parseWeekText('mon-wed 09:00-12:00,13:00-17:00; fri never')), 'mon 09:00-12:00,13:00-17:00; tue 09:00-12:00,13:00-17:00; wed 09:00-12:00,13:00-17:00; fri never');
  assert.deepEqual(Object.keys(parseWeekText('fri-mon any; tue never')), ['tue']);
});

test('bad text is refused naming the part', () => {
  assert.throws(() => parseWeekText(''), /empty/);
  assert.throws(() => parseWeekText('funday 09:00-10:00'), /"funday" in "funday 09:00-10:00" is not a weekday/);
  assert.throws(() => parseWeekText('mon 9-10'), /"9-10" in "mon 9-10" is not HH:MM-HH:MM/);
  assert.throws(() => parseWeekText('mon 25:00-26:00'), /must be HH:MM/);
  assert.throws(() => parseWeekText('mon any; mon never'), /mon is named twice/);
});
