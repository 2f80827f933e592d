import { test } from 'node:test';
import assert from 'node:assert/strict';
import { StringDecoder } from 'node:string_decoder';
import { utf16Units, Utf8Stream, wholeCharsEnd } from './log-text.js';
import { LogBuffer } from './runner.js';
import type { LogText } from './log-text.js';

const SAMPLES = ['plain ascii\n', 'héllo wörld\n', '日本語のログ\n', 'emoji 😀🎉 and more\n', 'mixed é😀日x\n'];

test('utf16Units: the length a JS string of the same text has (log-ack offsets count these)', () => {
  for (const s of [...SAMPLES, '', '\u0000', '\uffff', '\u{10ffff}']) assert.equal(utf16Units(Buffer.from(s)), s.length, JSON.stringify(s));
});

test('wholeCharsEnd: a chunk is cut before a character it ends inside, else at its end', () => {
  const e = Buffer.from('a😀'); // 61 f0 9f 98 80
  for (let cut = 0; cut <= e.length; cut++) assert.equal(wholeCharsEnd(e.subarray(0, cut)), cut >= 1 && cut < 5 ? 1 : cut, `cut ${cut}`);
  assert.equal(wholeCharsEnd(Buffer.from('é')), 2);
  assert.equal(wholeCharsEnd(Buffer.from([0xc3])), 0);
  // Invalid bytes are not cut off (they are replaced later): stray continuation bytes, bytes that never lead.
  assert.equal(wholeCharsEnd(Buffer.from([0x41, 0x80, 0x80, 0x80, 0x80])), 5);
  assert.equal(wholeCharsEnd(Buffer.from([0x41, 0xff])), 2);
});

test('Utf8Stream: however the output is cut into chunks, the text is what a string decoder makes of it; valid output stays the same bytes', () => {
  const inputs = [
    ...SAMPLES.map((s) => Buffer.from(s)),
    Buffer.from([0x61, 0xff, 0x62, 0xc3, 0x28, 0xe2, 0x82, 0x41, 0xf0, 0x9f, 0x98, 0x0a]), // invalid sequences
    Buffer.from([0xed, 0xa0, 0x80, 0x41]), // a surrogate encoded as UTF-8 (invalid)
  ];
  for (const input of inputs) {
    for (let size = 1; size <= input.length; size++) {
      const stream = new Utf8Stream();
      const decoder = new StringDecoder('utf8');
      let expected = '';
      const got: LogText[] = [];
      for (let i = 0; i < input.length; i += size) {
        const chunk = input.subarray(i, i + size);
        expected += decoder.write(chunk);
        const t = stream.write(chunk);
        if (t) got.push(t);
      }
      const text = Buffer.concat(got.map((t) => t.bytes)).toString('utf8');
      assert.equal(text, expected, `${input.toString('hex')} in chunks of ${size}`);
      assert.equal(got.reduce((n, t) => n + t.units, 0), expected.length, 'units');
      for (const t of got) assert.equal(t.units, t.bytes.toString('utf8').length);
    }
  }
  // Valid and whole: the very bytes read, not a copy.
  const chunk = Buffer.from('héllo\n');
  assert.equal(new Utf8Stream().write(chunk)?.bytes, chunk);
});

test('LogBuffer: frames of at most its size cut at whole characters, stdout and stderr never inside each other\'s characters, every byte once and in order', async () => {
  const frames: LogText[] = [];
  const log = new LogBuffer((t) => { frames.push({ ...t, bytes: Buffer.from(t.bytes) }); }, 64);
  const out = Buffer.from('é😀'.repeat(40)); // 240 bytes, cut at odd places below
  const err = Buffer.from('日'.repeat(30));
  log.line('first');
  let o = 0;
  let e = 0;
  while (o < out.length || e < err.length) {
    if (o < out.length) { void log.write(out.subarray(o, o + 7), 'stdout'); o += 7; }
    if (e < err.length) { void log.write(err.subarray(e, e + 5), 'stderr'); e += 5; }
  }
  void log.write(Buffer.alloc(300, 0x61), 'stdout'); // larger than a frame: cut
  await log.flush();
  const all = Buffer.concat(frames.map((f) => f.bytes)).toString('utf8');
  assert.equal(all.replace(/[^é😀]/gu, ''), 'é😀'.repeat(40));
  assert.equal(all.replace(/[^日]/gu, ''), '日'.repeat(30));
  assert.ok(all.startsWith('first\n') && all.endsWith('a'.repeat(300)));
  assert.equal(all.includes('\ufffd'), false, 'no character was cut');
  for (const f of frames) {
    assert.ok(f.bytes.length < 2 * 64, `a frame of ${f.bytes.length} bytes`);
    assert.equal(f.units, f.bytes.toString('utf8').length);
    // Several pieces joined into one buffer, with room for the frame's header before them.
    if (f.room !== undefined) assert.equal(f.room, 40);
  }
  assert.ok(frames.some((f) => f.room === 40), 'some frames are joined pieces');
});

test('LogBuffer: a frame of one piece (a pipe read as large as a frame) is that piece\'s own bytes, not a copy; several pieces are joined with room for the header', async () => {
  const frames: LogText[] = [];
  const log = new LogBuffer((t) => { frames.push(t); }, 64 * 1024);
  const read = Buffer.alloc(64 * 1024, 0x61);
  void log.write(read, 'stdout');
  void log.write(Buffer.from('small '), 'stdout');
  void log.write(Buffer.from('pieces\n'), 'stderr');
  await log.flush();
  assert.equal(frames.length, 2);
  assert.equal(frames[0]!.bytes, read, 'the read itself');
  assert.equal(frames[0]!.room, undefined, 'no room before it: the link writes the header apart');
  assert.equal(frames[1]!.bytes.toString(), 'small pieces\n');
  assert.equal(frames[1]!.room, 40);
});

test('a step whose output ends inside a character: its last bytes go as U+FFFD at the flush, as a string decoder\'s end() makes them — not lost, not glued to the next step\'s output', async () => {
  const frames: Buffer[] = [];
  const log = new LogBuffer((t) => { frames.push(Buffer.from(t.bytes)); });
  const euro = Buffer.from('€'); // 3 bytes
  void log.write(Buffer.concat([Buffer.from('price: '), euro.subarray(0, 2)]), 'stdout');
  void log.write(Buffer.from([0xf0, 0x9f]), 'stderr');
  await log.flush(); // the step ended
  void log.write(Buffer.from('next step\n'), 'stdout');
  await log.flush();
  const all = Buffer.concat(frames).toString('utf8');
  const d = new StringDecoder('utf8');
  const expected = d.write(Buffer.concat([Buffer.from('price: '), euro.subarray(0, 2)])) + d.end();
  assert.ok(all.startsWith(expected), JSON.stringify(all));
  assert.equal(all, `${expected}\ufffdnext step\n`, 'stderr\'s cut emoji is one U+FFFD; the next step starts clean');
  const s = new Utf8Stream();
  assert.equal(s.end(), null, 'nothing kept: nothing to add');
});
