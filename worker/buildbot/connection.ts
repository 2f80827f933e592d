import { decode, Encoder } from '@msgpack/msgpack';
import WebSocket from 'ws';

/**
 * One `msgpack_experimental_v7` connection to a BuildBot master: a WebSocket (HTTP Basic auth
 * on the upgrade, no subprotocol, no compression), one msgpack map per binary frame. Each side
 * numbers its own requests 0, 1, 2, … and answers every request of the other with
 * `{op: "response", seq_number, result}` (+ `is_exception: true`). See
 * /usr/lib/python3/dist-packages/buildbot/worker/protocols/manager/msgpack.py.
 */

export type Message = Record<string, unknown>;
/** Answers one request from the master: the result, or throws (sent back as is_exception). */
export type RequestHandler = (msg: Message) => Promise<unknown> | unknown;

/** Past this many bytes queued on the socket, log output waits (backpressure on the build). */
const HIGH_WATER = 4 * 1024 * 1024;
/** The largest frame accepted from the master: one 16 MiB block plus ample room for the rest of a message. */
export const MAX_FRAME = 64 * 1024 * 1024;
// useBigInt64: stat() results can hold 64-bit inode and device numbers.
const encoder = new Encoder({ ignoreUndefined: false, useBigInt64: true });

export class MasterError extends Error {}

export class MsgpackConnection {
  private seq = 0;
  private readonly waiting = new Map<number, { ok: (v: unknown) => void; fail: (e: Error) => void }>();
  private closedReason: string | null = null;
  /** Resolves with a sentence when the connection ends, however it ends. */
  readonly closed: Promise<string>;

  private constructor(private readonly ws: WebSocket, private readonly handler: RequestHandler, private readonly log: (line: string) => void) {
    this.closed = new Promise((resolve) => {
      ws.on('close', (code, reason) => {
        this.closedReason = `connection closed (${code}${reason.length ? ` ${reason.toString()}` : ''})`;
        for (const w of this.waiting.values()) w.fail(new Error('Connection lost'));
        this.waiting.clear();
        resolve(this.closedReason);
      });
    });
    // Errors while connecting are reported by open(); these are the ones after.
    ws.on('error', (e) => { if (ws.readyState !== WebSocket.CONNECTING) log(`buildbot: connection error: ${e.message}`); });
    ws.on('message', (data, isBinary) => {
      if (!isBinary) { log('buildbot: ignoring a text frame from the master'); return; }
      this.receive(data as Buffer);
    });
  }

  /** Connects and authenticates; rejects with a sentence naming what went wrong. */
  static open(url: string, name: string, password: string, handler: RequestHandler, log: (line: string) => void): Promise<MsgpackConnection> {
    if (name.includes(':')) return Promise.reject(new Error(`worker name "${name}" must not contain ":" (HTTP Basic auth)`));
    const auth = `Basic ${Buffer.from(`${name}:${password}`).toString('base64')}`;
    return new Promise((resolve, reject) => {
      // maxPayload: the largest frame a master may send (the worker's memory). A download
      // block is at most 16 MiB (transfer-commands.ts MAX_BLOCK); a larger frame closes the
      // connection (1009) instead of being buffered.
      const ws = new WebSocket(url, { headers: { Authorization: auth }, perMessageDeflate: false, handshakeTimeout: 15_000, maxPayload: MAX_FRAME });
      // Frames can arrive right after the upgrade: the connection must exist before 'open' returns.
      const conn = new MsgpackConnection(ws, handler, log);
      ws.once('unexpected-response', (_req, res) => {
        const why = res.statusCode === 401 ? `the master refused worker "${name}": unknown name or wrong password (HTTP 401)`
          : `the master answered the WebSocket upgrade with HTTP ${res.statusCode} ${res.statusMessage ?? ''}`.trim();
        res.resume();
        ws.terminate();
        reject(new MasterError(why));
      });
      ws.once('open', () => resolve(conn));
      ws.once('error', (e) => reject(new Error(`cannot connect to ${url}: ${e.message}`)));
      ws.once('close', () => reject(new Error(`cannot connect to ${url}: closed during the handshake`)));
    });
  }

  get isOpen(): boolean {
    return this.ws.readyState === WebSocket.OPEN;
  }

  /** Sends a request (`op` and its keys) and resolves with the master's result. */
  request(msg: Message): Promise<unknown> {
    if (this.closedReason || this.ws.readyState !== WebSocket.OPEN) return Promise.reject(new Error('Connection lost'));
    const seq = this.seq++;
    return new Promise((ok, fail) => {
      this.waiting.set(seq, { ok, fail });
      this.write({ ...msg, seq_number: seq });
    });
  }

  /** Null when the socket can take more; else resolves once less than HIGH_WATER bytes wait (or it closed). */
  drained(): Promise<void> | null {
    return this.ws.bufferedAmount > HIGH_WATER ? this.waitDrained() : null;
  }

  private async waitDrained(): Promise<void> {
    while (this.ws.bufferedAmount > HIGH_WATER && this.ws.readyState === WebSocket.OPEN) {
      await new Promise((ok) => setTimeout(ok, 10));
    }
  }

  close(): void {
    if (this.ws.readyState === WebSocket.OPEN || this.ws.readyState === WebSocket.CONNECTING) this.ws.close(1000, 'worker stopping');
    const ws = this.ws;
    setTimeout(() => ws.terminate(), 2000).unref();
  }

  private write(msg: Message): void {
    this.ws.send(encoder.encode(msg), { binary: true });
  }

  private receive(data: Buffer): void {
    let msg: unknown;
    try {
      msg = decode(data);
    } catch (e) {
      this.log(`buildbot: undecodable frame from the master: ${(e as Error).message}`);
      return;
    }
    if (typeof msg !== 'object' || msg === null || Array.isArray(msg)) {
      this.log('buildbot: a frame from the master is not a msgpack map; ignored');
      return;
    }
    const m = msg as Message;
    if (typeof m.op !== 'string' || typeof m.seq_number !== 'number') {
      this.log(`buildbot: message without op/seq_number from the master; ignored: ${JSON.stringify(m).slice(0, 200)}`);
      return;
    }
    if (m.op === 'response') {
      const w = this.waiting.get(m.seq_number);
      if (!w) { this.log(`buildbot: response to unknown request ${m.seq_number}`); return; }
      this.waiting.delete(m.seq_number);
      if (m.is_exception) w.fail(new MasterError(String(m.result)));
      else w.ok(m.result);
      return;
    }
    const seq = m.seq_number;
    Promise.resolve().then(() => this.handler(m)).then(
      (result) => this.respond(seq, result ?? null, false),
      (e: unknown) => this.respond(seq, e instanceof Error ? e.message : String(e), true),
    );
  }

  private respond(seq: number, result: unknown, isException: boolean): void {
    if (this.ws.readyState !== WebSocket.OPEN) return;
    this.write({ op: 'response', seq_number: seq, result, ...(isException ? { is_exception: true } : {}) });
  }
}
