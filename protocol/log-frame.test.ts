import { test } from 'node:test';
import assert from 'node:assert/strict';
import { decodeLogFrame, decodeLogFrameBytes, encodeLogFrame, isLogFrame, LOG_FRAME_ROOM } from './log-frame.js';
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

test('log frames from bytes: the same frame as from a string; framed in the room before the text without a copy; read back as a view of the bytes', () => {
  const text = bytes('héllo 😀\n');
  assert.deepEqual(encodeLogFrame(3, 1, text), bytes(encodeLogFrame(3, 1, 'héllo 😀\n')));
  assert.deepEqual(encodeLogFrame(3, 1, text, 17), bytes(encodeLogFrame(3, 1, 'héllo 😀\n', 17)));
  // With room before the text, the header is written there and the frame shares its memory.
  const buf = new Uint8Array(LOG_FRAME_ROOM + text.length);
  buf.set(text, LOG_FRAME_ROOM);
  const inPlace = encodeLogFrame(4_000_000_000, 4_000_000_000, buf.subarray(LOG_FRAME_ROOM), Number.MAX_SAFE_INTEGER, LOG_FRAME_ROOM);
  assert.equal(inPlace.buffer, buf.buffer);
  assert.deepEqual(inPlace, bytes(encodeLogFrame(4_000_000_000, 4_000_000_000, 'héllo 😀\n', Number.MAX_SAFE_INTEGER)));
  // Too little room: a copy, and the buffer is not written before the text.
  const small = new Uint8Array(4 + text.length).fill(0x2a);
  small.set(text, 4);
  const copied = encodeLogFrame(1, 1, small.subarray(4), undefined, 4);
  assert.notEqual(copied.buffer, small.buffer);
  assert.deepEqual(small.subarray(0, 4), new Uint8Array(4).fill(0x2a));
  assert.deepEqual(copied, bytes('L1 1\nhéllo 😀\n'));

  const r = decodeLogFrameBytes(encodeLogFrame(9, 2, text, 5));
  assert.ok(r.ok);
  assert.deepEqual([r.value.buildId, r.value.attempt, r.value.offset, [...r.value.data]], [9, 2, 5, [...text]]);
  // The same refusals as decodeLogFrame.
  for (const f of ['L12 1', 'L0 1\nx', '{"type":"log"}']) assert.equal(decodeLogFrameBytes(bytes(f)).ok, false, f);
});
