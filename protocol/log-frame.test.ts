import { test } from 'node:test';
import assert from 'node:assert/strict';
import { decodeLogFrame, encodeLogFrame, isLogFrame } from './log-frame.js';
import { MAX_FRAME_BYTES } from './version.js';

const bytes = (s: string) => new TextEncoder().encode(s);

test('log frames: what is encoded decodes the same; each malformed frame is refused naming why', () => {
  const frame = encodeLogFrame(4_000_000_000, 3, 'héllo\n{"not": "json"}\n');
  assert.equal(frame, 'L4000000000 3\nhéllo\n{"not": "json"}\n');
  const back = decodeLogFrame(bytes(frame));
  assert.ok(back.ok);
  assert.deepEqual([back.value.type, back.value.buildId, back.value.attempt, back.value.data],
    ['log', 4_000_000_000, 3, 'héllo\n{"not": "json"}\n']);
  // A frame inside a larger buffer (as ws may hand it over) reads the same.
  const inside = new Uint8Array(frame.length + 10);
  inside.set(bytes(frame), 5);
  const sub = decodeLogFrame(inside.subarray(5, 5 + bytes(frame).length));
  assert.ok(sub.ok && sub.value.buildId === 4_000_000_000 && sub.value.data === 'héllo\n{"not": "json"}\n');
  const empty = decodeLogFrame(bytes(encodeLogFrame(1, 1, '')));
  assert.ok(empty.ok && empty.value.data === '');
  assert.equal(isLogFrame(bytes('{"type":"log"}')), false);
  // FEATURE_LOG_ACK: the offset rides in the header; without one there is none.
  const at = decodeLogFrame(bytes(encodeLogFrame(7, 2, 'tail', 123_456)));
  assert.ok(at.ok);
  assert.deepEqual([at.value.buildId, at.value.attempt, at.value.offset, at.value.data], [7, 2, 123_456, 'tail']);
  const zero = decodeLogFrame(bytes(encodeLogFrame(7, 2, 'x', 0)));
  assert.ok(zero.ok && zero.value.offset === 0);
  assert.ok(back.value.offset === undefined);
  assert.equal(isLogFrame(new Uint8Array(0)), false);

  const refuse = (f: string | Uint8Array, why: RegExp) => {
    const r = decodeLogFrame(typeof f === 'string' ? bytes(f) : f);
    assert.ok(!r.ok, `accepted ${String(f).slice(0, 30)}`);
    assert.match(r.error, why);
  };
  refuse('L12 1', /no newline within 40 bytes/);
  refuse('L 1\nx', /is not "L<buildId> <attempt>\[ <offset>\]"/);
  refuse('L0 1\nx', /with positive integers/);
  refuse('L1 01\nx', /with positive integers/);
  refuse('L1 -1\nx', /with positive integers/);
  refuse('L1 1 01\nx', /with positive integers/);
  refuse('L1 1 -1\nx', /with positive integers/);
  refuse('L1 1 1 1\nx', /with positive integers/);
  refuse('L1 1 99999999999999999\nx', /with positive integers/);
  refuse('L1 1 9999999999999999\nx', /offset 9999999999999999 is over 9007199254740991/);
  refuse('L1\u00001\nx', /"L1\?1"/);
  refuse('L9999999999 1\nx', /over 4294967295/);
  refuse('{"type":"log"}', /starts with "L"/);
  refuse(new Uint8Array(MAX_FRAME_BYTES + 1).fill(0x4c), /over the limit/);
});
