import { test } from 'node:test';
import assert from 'node:assert/strict';
import type { AddressInfo, Socket } from 'node:net';
import { WebSocketServer, type WebSocket } from 'ws';
import { PROTOCOL_VERSION } from '../protocol/version.js';
import { FEATURE_ADOPTION, FEATURE_CPU_TIME, FEATURE_LOG_ACK, FEATURE_PROVENANCE, FEATURE_PROVENANCE_V1, FEATURES_HEADER } from '../protocol/worker-features.js';
import { LOG_FRAME_ROOM } from '../protocol/log-frame.js';
import { logText, type LogText } from './log-text.js';
import { asWebSocket, linkedPair } from '../test/helpers/linked-sockets.js';
import { MasterLink, masksFrames, MAX_UNACKED_LOG, textFrameHead } from './master-link.js';

const CAPS = { os: 'x', platform: 'linux', arch: 'x64', cpus: 1, memoryBytes: 1, diskBytes: 1, executors: ['host' as const], labels: [], maxBuilds: 1, virtualization: false };

/** A stand-in master on loopback that welcomes the worker and can stop reading from it. */
async function fakeMaster() {
  const wss = new WebSocketServer({ host: '127.0.0.1', port: 0, maxPayload: 8 * 1024 * 1024 });
  await new Promise((ok) => wss.once('listening', ok));
  const frames: string[] = [];
  const peer = new Promise<WebSocket>((ok) => wss.once('connection', (ws) => {
    ws.on('message', (d) => {
      const text = d.toString();
      if (text.startsWith('{"type":"hello"')) ws.send(JSON.stringify({ type: 'welcome', protocol: PROTOCOL_VERSION, name: 'w', heartbeatMs: 60_000 }));
      else frames.push(text);
    });
    ok(ws);
  }));
  return { wss, url: `ws://127.0.0.1:${(wss.address() as AddressInfo).port}`, frames, peer, close: () => new Promise((ok) => wss.close(ok)) };
}

/** A link connected to a fakeMaster, closed after the test; `raw` is the master's end of the socket. */
async function connectedLink(t: { after(fn: () => Promise<void>): void }) {
  const master = await fakeMaster();
  const link = new MasterLink({ url: master.url, name: 'w', token: 't', agentVersion: 'test', capabilities: async () => CAPS, availability: () => ({ accepting: true, reason: '' }) });
  t.after(async () => { link.close(); await master.close(); });
  await new Promise((ok) => { link.once('connected', ok); link.start(); });
  const peer = await master.peer;
  return { master, link, peer, raw: (peer as unknown as { _socket: Socket })._socket };
}

const settled = (p: Promise<void>, ms: number) => Promise.race([p.then(() => 'resolved', (e: Error) => `rejected: ${e.message}`), new Promise((ok) => setTimeout(() => ok('pending'), ms))]);

test('log frames: no promise while the socket keeps up; one that waits while the master does not read, resolves when it does, rejects when the connection is lost', async (t) => {
  const { master, link, peer, raw } = await connectedLink(t);

  const chunk = 'x'.repeat(64 * 1024);
  assert.equal(link.sendLog(1, 1, chunk), undefined, 'a socket that keeps up gives no promise');
  // The master stops reading: the kernel's buffers fill, then ws's, and past 1 MiB unsent the
  // sender is told to wait.
  raw.pause();
  let sent = 1;
  let waiting: void | Promise<void> = undefined;
  while (!waiting && sent < 1000) waiting = link.sendLog(1, 1, `${sent++}:${chunk}`);
  assert.ok(waiting instanceof Promise, `no backpressure after ${sent} frames of 64 KiB`);
  assert.equal(await settled(waiting, 300), 'pending');
  raw.resume();
  assert.equal(await settled(waiting, 10_000), 'resolved');
  // Resolved once the last frame is written to the socket; the master may still be reading it.
  await until(() => master.frames.length >= sent);
  assert.equal(master.frames.length, sent, 'every frame arrived');
  assert.deepEqual(master.frames.slice(1).map((f) => Number(/^L1 1\n(\d+):/.exec(f)?.[1])), Array.from({ length: sent - 1 }, (_, i) => i + 1), 'in order');

  // Backed up again, then the connection goes: the waiting sender hears of it.
  raw.pause();
  waiting = undefined;
  for (let i = 0; !waiting && i < 1000; i++) waiting = link.sendLog(1, 1, chunk);
  assert.ok(waiting instanceof Promise);
  raw.destroy();
  assert.match(String(await settled(waiting, 10_000)), /^rejected: connection to the master lost$/);
  await assert.rejects(Promise.resolve(link.sendLog(1, 1, 'after')), /not connected to the master/);
});

test('cpuMs in `state finished` goes only to a master that announced cpu-time: an older master (strict schemas) never sees the field', async (t) => {
  for (const announce of [false, true]) {
    const master = await fakeMaster();
    if (announce) master.wss.on('headers', (h) => { h.push(`${FEATURES_HEADER}: other, ${FEATURE_CPU_TIME}`); });
    const link = new MasterLink({ url: master.url, name: 'w', token: 't', agentVersion: 'test', capabilities: async () => CAPS, availability: () => ({ accepting: true, reason: '' }) });
    t.after(async () => { link.close(); await master.close(); });
    await new Promise((ok) => { link.once('connected', ok); link.start(); });
    await link.send({ type: 'state', buildId: 1, attempt: 1, state: 'finished', result: 'success', message: null, cpuMs: 1234 });
    await link.send({ type: 'state', buildId: 1, attempt: 1, state: 'running', result: null, message: null });
    await until(() => master.frames.length === 2);
    assert.deepEqual(master.frames.map((f) => (JSON.parse(f) as { cpuMs?: number }).cpuMs), [announce ? 1234 : undefined, undefined], `announced: ${announce}`);
  }
});

test('[provenance] a signed statement in `state finished` goes only to a master that announced provenance; cpuMs and it are dropped independently', async (t) => {
  const envelope = { payloadType: 'application/vnd.in-toto+json', payload: 'e30=', signatures: [{ keyid: '', sig: 'c2ln' }] };
  for (const announced of [[], [FEATURE_CPU_TIME], [FEATURE_PROVENANCE], [FEATURE_PROVENANCE_V1], [FEATURE_CPU_TIME, FEATURE_PROVENANCE]]) {
    const master = await fakeMaster();
    if (announced.length) master.wss.on('headers', (h) => { h.push(`${FEATURES_HEADER}: ${announced.join(', ')}`); });
    const link = new MasterLink({ url: master.url, name: 'w', token: 't', agentVersion: 'test', capabilities: async () => CAPS, availability: () => ({ accepting: true, reason: '' }) });
    t.after(async () => { link.close(); await master.close(); });
    await new Promise((ok) => { link.once('connected', ok); link.start(); });
    await link.send({ type: 'state', buildId: 1, attempt: 1, state: 'finished', result: 'success', message: null, cpuMs: 5, provenance: envelope });
    await until(() => master.frames.length === 1);
    const got = JSON.parse(master.frames[0]!) as { cpuMs?: number; provenance?: unknown };
    assert.deepEqual([got.cpuMs, got.provenance], [announced.includes(FEATURE_CPU_TIME) ? 5 : undefined, announced.includes(FEATURE_PROVENANCE) ? envelope : undefined], `announced: ${announced.join(',')}`);
  }
});

/** A stand-in farm master (announces adoption and log-ack): records every frame, hello included, and hands out its sockets. */
async function farmMaster(windowMs = 10_000, answers = () => true, heartbeatMs = 60_000) {
  const wss = new WebSocketServer({ host: '127.0.0.1', port: 0, maxPayload: 64 * 1024 * 1024 });
  await new Promise((ok) => wss.once('listening', ok));
  wss.on('headers', (h) => { h.push(`${FEATURES_HEADER}: ${FEATURE_ADOPTION}, ${FEATURE_LOG_ACK}`); });
  const frames: string[] = [];
  const sockets: WebSocket[] = [];
  wss.on('connection', (ws) => {
    sockets.push(ws);
    ws.on('message', (d) => {
      const text = d.toString();
      if (text.startsWith('{"type":"hello"') && !answers()) { ws.terminate(); return; }
      frames.push(text);
      if (text.startsWith('{"type":"hello"')) {
        ws.send(JSON.stringify({ type: 'welcome', protocol: PROTOCOL_VERSION, name: 'w', heartbeatMs }));
        ws.send(JSON.stringify({ type: 'adoption', windowMs }));
      }
    });
    // Pings as a master does, so the worker never finds it silent.
    const ping = setInterval(() => ws.ping(), heartbeatMs / 4);
    ws.on('close', () => clearInterval(ping));
  });
  return { url: `ws://127.0.0.1:${(wss.address() as AddressInfo).port}`, frames, sockets, close: () => new Promise((ok) => wss.close(ok)) };
}

/** Two farm masters and a link connected to the first, running build 1 attempt 2, its adoption message read. */
async function failoverPair(t: { after(fn: () => unknown): void }) {
  const a = await farmMaster();
  const b = await farmMaster();
  const link = new MasterLink({ url: a.url, urls: [a.url, b.url], running: () => [{ buildId: 1, attempt: 2 }], name: 'w', token: 't', agentVersion: 'test',
    capabilities: async () => CAPS, availability: () => ({ accepting: true, reason: '' }), backoff: { minMs: 10, maxMs: 20 } });
  t.after(async () => { link.close(); await a.close(); await b.close(); });
  await new Promise((ok) => { link.once('connected', ok); link.start(); });
  await until(() => a.sockets.length === 1);
  await processed(a.sockets[0]!); // the adoption message
  return { a, b, link };
}

test('log-ack: frames carry their offset; after a fail-over the next master gets, first, exactly the text the last one did not acknowledge — held text once, acknowledged text never', async (t) => {
  const { a, b, link } = await failoverPair(t);
  for (const text of ['aaa', 'bbbb', 'cc']) await link.sendLog(1, 2, text);
  await until(() => a.frames.length === 4);
  assert.deepEqual(a.frames.slice(1), ['L1 2 0\naaa', 'L1 2 3\nbbbb', 'L1 2 7\ncc']);
  // The master stored the first 5 characters (half of "bbbb"), then dies.
  a.sockets[0]!.send(JSON.stringify({ type: 'logAck', buildId: 1, attempt: 2, offset: 5 }));
  await processed(a.sockets[0]!);
  // Written at the moment the link drops (its 'disconnected' event): polling for `holding`
  // could miss the window, which ends as soon as the next master welcomes it (10-20 ms here).
  // Held too: a text large enough to go as a split frame on this (loopback) link, whose bytes are the caller's own.
  const big = Buffer.from('D'.repeat(20_000));
  const dropped = new Promise<{ holding: boolean; sent: (void | Promise<void>)[] }>((ok) => link.once('disconnected', (_why: string, holding: boolean) => ok({ holding, sent: [link.sendLog(1, 2, 'dd'), link.sendLog(1, 2, { bytes: big, units: big.length })] })));
  a.sockets[0]!.terminate();
  const { holding, sent: held } = await dropped;
  assert.equal(holding, true, 'a master of a farm went away: the builds are held');
  assert.ok(held.every((h) => h instanceof Promise), 'written while between masters: held');
  await until(() => b.frames.length >= 5);
  assert.deepEqual(await Promise.all(held), [undefined, undefined]);
  const hello = JSON.parse(b.frames[0]!) as { type: string; running?: unknown };
  assert.deepEqual([hello.type, hello.running], ['hello', [{ buildId: 1, attempt: 2 }]]);
  await new Promise((ok) => setTimeout(ok, 100));
  assert.deepEqual(b.frames.slice(1), ['L1 2 5\nbb', 'L1 2 7\ncc', 'L1 2 9\ndd', `L1 2 11\n${big.toString()}`], 'the unacknowledged rest, in order, once');

  // Past MAX_UNACKED_LOG characters not acknowledged, the sender waits for acknowledgements.
  // 20,006 characters are kept (the rest of "bbbb", "cc", "dd", the large one): 7 chunks of 1 Mi
  // stay under the bound (their waits, if any, are the socket's and end by themselves); the 8th goes over.
  const chunk = 'x'.repeat(1024 * 1024);
  const under = MAX_UNACKED_LOG / chunk.length - 1;
  for (let i = 0; i < under; i++) await link.sendLog(1, 2, chunk);
  const waiting = link.sendLog(1, 2, chunk);
  assert.ok(waiting instanceof Promise, 'over the bound: the sender is given a wait');
  // Every frame reached the master, so the socket is not what it waits for.
  await until(() => b.frames.length >= 5 + under + 1);
  assert.equal(await settled(waiting, 100), 'pending', 'written out, but not acknowledged: still waiting');
  b.sockets[0]!.send(JSON.stringify({ type: 'logAck', buildId: 1, attempt: 2, offset: 11 + big.length + (under + 1) * chunk.length }));
  assert.equal(await settled(waiting, 5000), 'resolved');
});

test('adoption window over: the attempts given up are never named or reported again — a later master must requeue them, not take their `cancelled` end as the result', async (t) => {
  let open = false;
  const a = await farmMaster(300);
  const b = await farmMaster(300, () => open);
  const running = [{ buildId: 1, attempt: 1 }];
  const link = new MasterLink({ url: a.url, urls: [a.url, b.url], running: () => running, name: 'w', token: 't', agentVersion: 'test',
    capabilities: async () => CAPS, availability: () => ({ accepting: true, reason: '' }), backoff: { minMs: 10, maxMs: 50 } });
  t.after(async () => { link.close(); await a.close(); await b.close(); });
  const released = new Promise<string>((ok) => link.once('released', ok));
  await new Promise((ok) => { link.once('connected', ok); link.start(); });
  await until(() => a.sockets.length === 1);
  await processed(a.sockets[0]!); // the adoption message
  const closed = a.close();
  a.sockets[0]!.terminate();
  await closed;
  assert.match(await released, /no master took this worker's builds over within 0s/);
  // The agent stops the build: its end and last words go nowhere.
  running.length = 0;
  const end = link.send({ type: 'state', buildId: 1, attempt: 1, state: 'finished', result: 'cancelled', message: 'stopped' });
  open = true;
  await until(() => b.frames.length >= 1);
  await end.catch(() => undefined);
  await link.send({ type: 'state', buildId: 1, attempt: 1, state: 'finished', result: 'cancelled', message: 'again' });
  link.sendLog(1, 1, 'late');
  await link.send({ type: 'availability', accepting: true, reason: 'marker' });
  await until(() => b.frames.some((f) => f.includes('marker')));
  const hello = JSON.parse(b.frames[0]!) as { running?: unknown };
  assert.equal(hello.running, undefined, 'the given-up attempt is not named');
  assert.deepEqual(b.frames.slice(1).filter((f) => !f.includes('marker')), [], 'nothing of it is sent');
});

test('fail-over: an end sent to a master that answers pings but never stored it (cut off from its database) is named to the next master and sent again, though older than 3 heartbeats, within the adoption window', async (t) => {
  // Heartbeats of 400 ms: the link drops a master silent for 2.5 of them, so a loaded machine's
  // stalls of a few hundred ms do not end the connection this test needs open.
  const a = await farmMaster(10_000, () => true, 400);
  const b = await farmMaster(10_000, () => true, 400);
  const link = new MasterLink({ url: a.url, urls: [a.url, b.url], running: () => [], name: 'w', token: 't', agentVersion: 'test',
    capabilities: async () => CAPS, availability: () => ({ accepting: true, reason: '' }), backoff: { minMs: 10, maxMs: 20 } });
  t.after(async () => { link.close(); await a.close(); await b.close(); });
  await new Promise((ok) => { link.once('connected', ok); link.start(); });
  await until(() => a.sockets.length === 1);
  await processed(a.sockets[0]!); // the adoption message
  await link.send({ type: 'state', buildId: 7, attempt: 1, state: 'finished', result: 'success', message: null });
  await until(() => a.frames.length === 2);
  // Four heartbeats later the master steps down and closes the socket (not silent meanwhile: it pinged).
  await new Promise((ok) => setTimeout(ok, 1600));
  assert.equal(link.connected, true, 'the master was not silent');
  a.sockets[0]!.close(1001, 'this master lost its lease; connect again');
  await until(() => b.frames.length >= 2);
  const hello = JSON.parse(b.frames[0]!) as { running?: unknown };
  assert.deepEqual(hello.running, [{ buildId: 7, attempt: 1 }], 'the unconfirmed end is named in the hello');
  assert.deepEqual(JSON.parse(b.frames[1]!), JSON.parse(a.frames[1]!), 'and sent again');
});

/** Resolves once the worker has handled every frame `ws` sent it before: it answers a ping only after those (frames are read in order). */
function processed(ws: WebSocket): Promise<void> {
  return new Promise((ok) => { ws.once('pong', () => ok()); ws.ping(); });
}

async function until(check: () => boolean): Promise<void> {
  for (let i = 0; i < 2000 && !check(); i++) await new Promise((r) => setTimeout(r, 10));
  assert.ok(check(), 'timed out');
}

test('log frames given as bytes go as text frames (a master refuses binary ones), the bytes as they are; a frame framed in its text\'s room is the same', async (t) => {
  const wss = new WebSocketServer({ host: '127.0.0.1', port: 0 });
  await new Promise((ok) => wss.once('listening', ok));
  const got: { binary: boolean; text: string }[] = [];
  wss.on('connection', (ws) => ws.on('message', (d, binary) => {
    const text = d.toString();
    if (text.startsWith('{"type":"hello"')) ws.send(JSON.stringify({ type: 'welcome', protocol: PROTOCOL_VERSION, name: 'w', heartbeatMs: 60_000 }));
    else got.push({ binary, text });
  }));
  const link = new MasterLink({ url: `ws://127.0.0.1:${(wss.address() as AddressInfo).port}`, name: 'w', token: 't', agentVersion: 'test', capabilities: async () => CAPS, availability: () => ({ accepting: true, reason: '' }) });
  t.after(async () => { link.close(); await new Promise((ok) => wss.close(ok)); });
  await new Promise((ok) => { link.once('connected', ok); link.start(); });
  const text = 'héllo 😀 日本\n';
  await link.sendLog(5, 1, logText(text));
  const roomy = Buffer.alloc(LOG_FRAME_ROOM + Buffer.byteLength(text));
  roomy.write(text, LOG_FRAME_ROOM);
  const inRoom: LogText = { bytes: roomy.subarray(LOG_FRAME_ROOM), units: text.length, room: LOG_FRAME_ROOM };
  await link.sendLog(5, 1, inRoom);
  assert.equal(inRoom.room, 0, 'the room is used once');
  await link.sendLog(5, 1, text);
  await until(() => got.length === 3);
  assert.deepEqual(got, [0, 1, 2].map(() => ({ binary: false, text: `L5 1\n${text}` })));
});

test('log-ack with text beyond ASCII: offsets count UTF-16 code units as before; an acknowledgement inside a frame keeps exactly the rest for the next master', async (t) => {
  const { a, b, link } = await failoverPair(t);
  for (const text of ['é😀x', '日本']) await link.sendLog(1, 2, logText(text));
  await until(() => a.frames.length === 3);
  assert.deepEqual(a.frames.slice(1), ['L1 2 0\né😀x', 'L1 2 4\n日本']);
  // Stored up to after "é😀" (3 code units), then the master dies.
  a.sockets[0]!.send(JSON.stringify({ type: 'logAck', buildId: 1, attempt: 2, offset: 3 }));
  await processed(a.sockets[0]!);
  a.sockets[0]!.terminate();
  await until(() => b.frames.length >= 3);
  assert.deepEqual(b.frames.slice(1), ['L1 2 3\nx', 'L1 2 4\n日本']);
  // Numbering goes on from there.
  await link.sendLog(1, 2, logText('z'));
  await until(() => b.frames.length >= 4);
  assert.equal(b.frames[3], 'L1 2 6\nz');
});

test('a log frame whose text (16 KiB or more) has no room for its header goes as one text frame of two buffers (header, text), byte for byte, at each length form of the frame head, in order with the JSON frames around it', async (t) => {
  const { master, link, peer } = await connectedLink(t);
  await processed(peer);
  const before = master.frames.length;
  const received: boolean[] = [];
  peer.prependListener('message', (_d: unknown, binary: boolean) => { received.push(binary); });
  // Payload lengths across the 16-bit and 64-bit length forms of a split frame (RFC 6455 §5.2),
  // header included, and short texts, which go joined with their header.
  const header = 'L9 1\n'.length;
  const lengths = [1, 125 - header, 126 - header, 16 * 1024, 65535 - header, 65536 - header, 64 * 1024, 3 * 1024 * 1024];
  const texts = lengths.map((n, i) => Buffer.from(`${i}:${'é日😀z'.repeat(n)}`.slice(0, n)).subarray(0, n));
  // What the worker's socket is given to write: the text's own buffer, not a copy.
  const sock = (link as unknown as { ws: { _socket: Socket & Record<'_write' | '_writev', (...a: unknown[]) => unknown> } }).ws._socket;
  const written = new Set<unknown>();
  const origWritev = sock._writev;
  sock._writev = function (this: unknown, ...a: unknown[]) { for (const c of a[0] as { chunk: unknown }[]) written.add(c.chunk); return origWritev.apply(this, a); };
  const origWrite = sock._write;
  sock._write = function (this: unknown, ...a: unknown[]) { written.add(a[0]); return origWrite.apply(this, a); };
  const sent: string[] = [];
  const given: Buffer[] = [];
  for (const [i, bytes] of texts.entries()) {
    const whole = Buffer.from(bytes.toString()); // whole characters only, as the runner gives
    given.push(whole);
    sent.push(`L9 1\n${whole.toString()}`);
    void link.sendLog(9, 1, { bytes: whole, units: whole.toString().length });
    void link.send({ type: 'step', buildId: 9, attempt: 1, index: i, name: 's', state: 'running', result: null, exitCode: null });
  }
  await until(() => master.frames.length >= before + 2 * texts.length);
  const got = master.frames.slice(before);
  assert.deepEqual(got.filter((f) => f.startsWith('L')), sent, 'each text as it was sent');
  assert.deepEqual(got.map((f) => f.startsWith('L') ? 'log' : (JSON.parse(f) as { index: number }).index), texts.flatMap((_, i) => ['log', i]), 'in order');
  assert.ok(received.every((b) => !b), 'text frames, never binary');
  // From 16 KiB on, each text is written from its own buffer (split); a shorter one is joined with its header.
  assert.deepEqual(given.map((b) => written.has(b)), given.map((b) => b.length >= 16 * 1024));
});

test('textFrameHead: FIN and opcode 1, the mask bit with a zero key, the length in its shortest form, then the payload\'s start', () => {
  assert.deepEqual([...textFrameHead(0)], [0x81, 0x80, 0, 0, 0, 0]);
  assert.deepEqual([...textFrameHead(125)], [0x81, 0x80 | 125, 0, 0, 0, 0]);
  assert.deepEqual([...textFrameHead(126)], [0x81, 0x80 | 126, 0, 126, 0, 0, 0, 0]);
  assert.deepEqual([...textFrameHead(65535)], [0x81, 0x80 | 126, 0xff, 0xff, 0, 0, 0, 0]);
  assert.deepEqual([...textFrameHead(65536)], [0x81, 0x80 | 127, 0, 0, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0]);
  // The payload's first bytes (a log frame's header) follow in the same buffer.
  assert.deepEqual([...textFrameHead(200, 'L1 2\n')], [0x81, 0x80 | 126, 0, 200, 0, 0, 0, 0, ...Buffer.from('L1 2\n')]);
});

test('a log frame with no room, on a socket ws does not expose (in memory): joined into one buffer and sent through ws, the same frame', async (t) => {
  const [workerEnd, masterEnd] = linkedPair();
  const got: { text: string; binary: boolean }[] = [];
  masterEnd.on('message', (d: Buffer, binary: boolean) => {
    const text = d.toString();
    if (text.startsWith('{"type":"hello"')) masterEnd.send(JSON.stringify({ type: 'welcome', protocol: PROTOCOL_VERSION, name: 'w', heartbeatMs: 60_000 }));
    else got.push({ text, binary });
  });
  const link = new MasterLink({ url: 'ws://127.0.0.1:1', name: 'w', token: 't', agentVersion: 'test', capabilities: async () => CAPS, availability: () => ({ accepting: true, reason: '' }), connect: () => asWebSocket(workerEnd) });
  t.after(() => link.close());
  await new Promise((ok) => { link.once('connected', ok); link.start(); });
  const text = `${'plain bytes '.repeat(2000)}\n`; // over 16 KiB: a split frame on a real socket
  await link.sendLog(3, 2, logText(text));
  await until(() => got.length === 1);
  assert.deepEqual(got, [{ text: `L3 2\n${text}`, binary: false }]);
});

test('a link that masks (plain ws:// to another host) sends every log frame as a string through ws, a large one included: never a split frame with its zero-key head', async (t) => {
  const [workerEnd, masterEnd] = linkedPair();
  const sentTypes: string[] = [];
  const send = workerEnd.send.bind(workerEnd);
  workerEnd.send = (data, ...rest) => { sentTypes.push(typeof data); send(data, ...rest); };
  const got: string[] = [];
  masterEnd.on('message', (d: Buffer) => {
    const text = d.toString();
    if (text.startsWith('{"type":"hello"')) masterEnd.send(JSON.stringify({ type: 'welcome', protocol: PROTOCOL_VERSION, name: 'w', heartbeatMs: 60_000 }));
    else got.push(text);
  });
  assert.equal(masksFrames('ws://build-master.example.org/api/v1/worker'), true);
  const link = new MasterLink({ url: 'ws://build-master.example.org/api/v1/worker', name: 'w', token: 't', agentVersion: 'test', capabilities: async () => CAPS, availability: () => ({ accepting: true, reason: '' }), connect: () => asWebSocket(workerEnd) });
  t.after(() => link.close());
  await new Promise((ok) => { link.once('connected', ok); link.start(); });
  const big = Buffer.from('m'.repeat(64 * 1024));
  const before = sentTypes.length;
  await link.sendLog(4, 1, { bytes: big, units: big.length });
  await link.sendLog(4, 1, logText('short\n'));
  await until(() => got.length === 2);
  assert.deepEqual(sentTypes.slice(before), ['string', 'string'], 'strings, which ws masks with a random key');
  assert.deepEqual(got, [`L4 1\n${big.toString()}`, 'L4 1\nshort\n']);
});

test('masksFrames: a random mask to a master over plain ws:// on a network; none through TLS or on loopback, where no proxy reads the frames', () => {
  for (const url of ['ws://example.org/api/v1/worker', 'ws://10.0.0.1:8080/api/v1/worker', 'ws://127.example.org/', 'not a url']) assert.equal(masksFrames(url), true, url);
  for (const url of ['wss://example.org/api/v1/worker', 'ws://127.0.0.1:8080/api/v1/worker', 'ws://localhost:1/', 'ws://[::1]:8080/']) assert.equal(masksFrames(url), false, url);
});

test('the frames written in one turn of the event loop leave in one write: one read on the master\'s socket, every frame whole and in order', async (t) => {
  const { master, link, peer, raw } = await connectedLink(t);
  await processed(peer); // whatever the worker wrote on connecting has been read
  const before = master.frames.length;
  // Each write the worker's socket makes (one writev or write syscall, or an attempt at one).
  const sock = (link as unknown as { ws: { _socket: Socket & Record<'_write' | '_writev', (...a: unknown[]) => unknown> } }).ws._socket;
  const writes: string[] = [];
  for (const k of ['_write', '_writev'] as const) {
    const orig = sock[k];
    sock[k] = function (this: unknown, ...a: unknown[]) { writes.push(k); return orig.apply(this, a); };
  }
  const reads: number[] = [];
  raw.prependListener('data', (chunk: Buffer) => { reads.push(chunk.length); });
  // A build's end, as the runner writes it: its last log text, the step, the state, in one turn.
  link.sendLog(5, 1, 'build success\n');
  void link.send({ type: 'step', buildId: 5, attempt: 1, index: 0, name: 'echo', state: 'finished', result: 'success', exitCode: 0 });
  void link.send({ type: 'state', buildId: 5, attempt: 1, state: 'finished', result: 'success', message: null });
  await until(() => master.frames.length >= before + 3);
  assert.deepEqual(writes, ['_writev'], 'one write of the three frames, not one per frame');
  assert.ok(reads.length >= 1 && reads.length <= writes.length);
  assert.deepEqual(master.frames.slice(before).map((f) => f.startsWith('L') ? f : (JSON.parse(f) as { type: string }).type), ['L5 1\nbuild success\n', 'step', 'state']);
  // A frame written in a later turn is a write of its own.
  await new Promise((ok) => setImmediate(ok));
  void link.send({ type: 'state', buildId: 6, attempt: 1, state: 'finished', result: 'success', message: null });
  await until(() => master.frames.length >= before + 4);
  assert.equal(writes.length, 2, 'a write of its own');
  // A large frame after a small one in the same turn is not held with it: both are written at once, before the turn ends.
  await new Promise((ok) => setImmediate(ok));
  void link.send({ type: 'state', buildId: 7, attempt: 1, state: 'finished', result: 'success', message: null });
  link.sendLog(7, 1, 'y'.repeat(64 * 1024));
  assert.equal(writes.length, 4, 'both written in this turn (the small frame let out first), not at its end');
  await until(() => master.frames.length >= before + 6);
});
