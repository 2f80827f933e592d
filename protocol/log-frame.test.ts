import { test } from 'node:test';
import assert from 'node:assert/strict';
import { decodeLogFrame, encodeLogFrame, LOG_FRAME_HEADER_BYTES } from './log-frame.js';
import { MAX_FRAME_BYTES } from './version.js';

test('log frames: what is encoded decodes the same; each malformed frame is refused naming why', () => {
  const data = new TextEncoder().encode('héllo\n');
  const frame = encodeLogFrame(4_000_000_000, 3, data);
  assert.equal(frame.length, LOG_FRAME_HEADER_BYTES + data.length);
  const back = decodeLogFrame(frame);
  assert.ok(back.ok);
  assert.deepEqual([back.value.type, back.value.buildId, back.value.attempt, [...back.value.data]], ['log', 4_000_000_000, 3, [...data]]);
  // A frame that starts inside a larger buffer (as ws may hand it over) reads the same.
  const inside = new Uint8Array(frame.length + 10);
  inside.set(frame, 5);
  const sub = decodeLogFrame(inside.subarray(5, 5 + frame.length));
  assert.ok(sub.ok && sub.value.buildId === 4_000_000_000 && new TextDecoder().decode(sub.value.data) === 'héllo\n');
  const empty = decodeLogFrame(encodeLogFrame(1, 1, new Uint8Array(0)));
  assert.ok(empty.ok && empty.value.data.length === 0);

  const refuse = (f: Uint8Array, why: RegExp) => {
    const r = decodeLogFrame(f);
    assert.ok(!r.ok, `accepted ${[...f.subarray(0, 12)]}`);
    assert.match(r.error, why);
  };
  refuse(new Uint8Array(0), /0 bytes is shorter than the 9-byte log header/);
  refuse(frame.subarray(0, 8), /8 bytes is shorter/);
  refuse(Uint8Array.of(2, 0, 0, 0, 1, 0, 0, 0, 1), /unknown kind 2/);
  refuse(encodeLogFrame(0, 1, data), /buildId 0 and attempt 1/);
  refuse(encodeLogFrame(1, 0, data), /attempt 0/);
  refuse(new Uint8Array(MAX_FRAME_BYTES + 1), /over the limit/);
});
