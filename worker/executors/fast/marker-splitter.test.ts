import assert from 'node:assert/strict';
import { PassThrough } from 'node:stream';
import { describe, test } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import { newMarker } from './agent-protocol.js';
import { MarkerSplitter, partialMarkerSuffix } from './marker-splitter.js';

/** Collects a sink; resolves with its bytes at 'end'. */
function collect(sink: PassThrough, delayMs = 0): Promise<string> {
  return new Promise((resolve) => {
    const parts: Buffer[] = [];
    sink.on('data', (c: Buffer) => {
      parts.push(c);
      if (delayMs > 0) {
        sink.pause();
        setTimeout(() => sink.resume(), delayMs);
      }
    });
    sink.on('end', () => resolve(Buffer.concat(parts).toString('latin1')));
  });
}

describe('MarkerSplitter', () => {
  test('partialMarkerSuffix finds the longest marker prefix at the end', () => {
    const m = Buffer.from('\x1eABC\x1e', 'latin1');
    assert.equal(partialMarkerSuffix(Buffer.from('xx\x1eAB', 'latin1'), m), 3);
    assert.equal(partialMarkerSuffix(Buffer.from('xx\x1e', 'latin1'), m), 1);
    assert.equal(partialMarkerSuffix(Buffer.from('xx\x1eAC', 'latin1'), m), 0);
    assert.equal(partialMarkerSuffix(Buffer.from('', 'latin1'), m), 0);
  });

  test('splits steps at their markers, also when a marker is cut across chunks', async () => {
    const source = new PassThrough();
    const splitter = new MarkerSplitter(source);
    const a = newMarker();
    const b = newMarker();
    const sinkA = new PassThrough();
    const gotA = collect(sinkA);
    splitter.begin(a.bytes, sinkA);
    const whole = Buffer.concat([Buffer.from('one\n\x1etwo'), a.bytes, Buffer.from('late '), Buffer.from('three'), b.bytes]);
    // One byte at a time: every possible cut of both markers.
    for (let i = 0; i < whole.length; i++) source.write(whole.subarray(i, i + 1));
    assert.equal(await gotA, 'one\n\x1etwo');
    const sinkB = new PassThrough();
    const gotB = collect(sinkB);
    splitter.begin(b.bytes, sinkB);
    assert.equal(await gotB, 'late three', 'what arrived between steps goes to the next step');
  });

  test('a slow sink pauses the source (backpressure) and loses nothing', async () => {
    const source = new PassThrough({ highWaterMark: 1024 });
    const splitter = new MarkerSplitter(source);
    const m = newMarker();
    const sink = new PassThrough({ highWaterMark: 1024 });
    const got = collect(sink, 2);
    splitter.begin(m.bytes, sink);
    const chunk = Buffer.alloc(4096, 'x');
    let blocked = 0;
    for (let i = 0; i < 64; i++) {
      if (!source.write(chunk)) {
        blocked++;
        await new Promise((r) => source.once('drain', r));
      }
    }
    source.write(m.bytes);
    assert.equal((await got).length, 64 * 4096);
    assert.ok(blocked > 0, 'the writer never had to wait');
  });

  test('the end of the source ends the step, keeping a held-back partial marker', async () => {
    const source = new PassThrough();
    const splitter = new MarkerSplitter(source);
    const m = newMarker();
    const sink = new PassThrough();
    const got = collect(sink);
    splitter.begin(m.bytes, sink);
    source.write(Buffer.concat([Buffer.from('partial'), m.bytes.subarray(0, 5)]));
    await sleep(10);
    source.end();
    assert.equal(await got, `partial${m.bytes.subarray(0, 5).toString('latin1')}`);
    assert.equal(splitter.closed, true);
    const after = new PassThrough();
    const gotAfter = collect(after);
    splitter.begin(newMarker().bytes, after);
    assert.equal(await gotAfter, '', 'a step begun after the end ends at once');
  });
});
