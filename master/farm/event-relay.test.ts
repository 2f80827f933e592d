import { test } from 'node:test';
import assert from 'node:assert/strict';
import { logPayloads } from './event-relay.js';

// A worker's log text, relayed to the other masters over NOTIFY (under 8000 bytes a payload).
test('event relay: a log of any text — control characters that JSON makes 6 bytes each, multi-byte, astral — becomes payloads under the limit that join back to the text', () => {
  const texts = ['', 'x', '\u0001'.repeat(20_000), '\u0000\u001f"\\'.repeat(5000), 'é'.repeat(9000), '😀'.repeat(4000), `${'a'.repeat(2332)}\u0000${'b'.repeat(5000)}`];
  for (const text of texts) {
    const payloads = logPayloads('master-1', 42, text);
    const joined = payloads.map((p) => {
      assert.ok(Buffer.byteLength(p) < 7000, `a payload of ${Buffer.byteLength(p)} bytes (text of ${text.length})`);
      const r = JSON.parse(p) as { m: string; e: { type: string; buildId: number; data: string } };
      assert.deepEqual([r.m, r.e.type, r.e.buildId], ['master-1', 'log', 42]);
      return r.e.data;
    }).join('');
    assert.equal(joined, text);
  }
});
