import { decode, encode } from '@msgpack/msgpack';
import type { IncomingMessage } from 'node:http';
import { WebSocketServer, type WebSocket } from 'ws';

/**
 * A scriptable stand-in for a BuildBot master's msgpack port: checks HTTP Basic auth, sends
 * requests and reads the answers, and acknowledges the worker's own requests (update,
 * complete, transfers) with `result: null` while recording them.
 */

export type Msg = Record<string, unknown>;

export class FakeConnection {
  private seq = 0;
  private readonly waiting = new Map<number, (m: Msg) => void>();
  readonly received: Msg[] = [];
  private readonly watchers: { pred: (m: Msg) => boolean; ok: (m: Msg) => void }[] = [];
  readonly closed: Promise<void>;

  constructor(readonly ws: WebSocket, readonly auth: string | undefined) {
    this.closed = new Promise((ok) => ws.on('close', () => ok()));
    ws.on('message', (data, isBinary) => {
      if (!isBinary) return;
      const m = decode(data as Buffer) as Msg;
      if (m.op === 'response') {
        this.waiting.get(m.seq_number as number)?.(m);
        return;
      }
      this.received.push(m);
      for (const w of [...this.watchers]) {
        if (w.pred(m)) { this.watchers.splice(this.watchers.indexOf(w), 1); w.ok(m); }
      }
      ws.send(encode({ op: 'response', seq_number: m.seq_number, result: this.answer?.(m) ?? null }));
    });
  }

  /** Optional: the result for a worker request (e.g. data for update_read_file). */
  answer: ((m: Msg) => unknown) | undefined;

  /** Sends a request; resolves with the whole response message. */
  request(op: string, extra: Msg = {}): Promise<Msg> {
    const seq = this.seq++;
    return new Promise((ok) => {
      this.waiting.set(seq, ok);
      this.ws.send(encode({ op, seq_number: seq, ...extra }));
    });
  }

  /** The first message from the worker (already received or future) that matches. */
  waitFor(pred: (m: Msg) => boolean, timeoutMs = 20_000): Promise<Msg> {
    const seen = this.received.find(pred);
    if (seen) return Promise.resolve(seen);
    return new Promise((ok, fail) => {
      const t = setTimeout(() => fail(new Error(`no matching message within ${timeoutMs} ms; got ${JSON.stringify(this.received.map((m) => m.op))}`)), timeoutMs);
      this.watchers.push({ pred, ok: (m) => { clearTimeout(t); ok(m); } });
    });
  }

  /** Starts a command and resolves with its updates (flattened [key, value] pairs) once it completed. */
  async run(name: string, args: Msg, id: string, builder: string | null = 'b'): Promise<{ response: Msg; updates: [string, unknown][]; complete: Msg }> {
    const response = await this.request('start_command', { command_id: id, command_name: name, args, ...(builder ? { builder_name: builder } : {}) });
    if (response.is_exception) return { response, updates: [], complete: {} };
    const complete = await this.waitFor((m) => m.op === 'complete' && m.command_id === id, 60_000);
    const updates = this.received.filter((m) => m.op === 'update' && m.command_id === id).flatMap((m) => m.args as [string, unknown][]);
    return { response, updates, complete };
  }
}

export class FakeMaster {
  readonly connections: FakeConnection[] = [];
  private waiters: ((c: FakeConnection) => void)[] = [];

  private constructor(readonly wss: WebSocketServer, readonly url: string) {}

  /** `accept(authorization header)`: false answers the upgrade with 401. */
  static start(accept: (auth: string | undefined) => boolean = () => true): Promise<FakeMaster> {
    return new Promise((resolve) => {
      const wss = new WebSocketServer({
        host: '127.0.0.1', port: 0, perMessageDeflate: false,
        verifyClient: (info: { req: IncomingMessage }, cb: (ok: boolean, code?: number) => void) => cb(accept(info.req.headers.authorization), 401),
      });
      wss.on('listening', () => {
        const m = new FakeMaster(wss, `ws://127.0.0.1:${(wss.address() as { port: number }).port}`);
        wss.on('connection', (ws, req) => {
          const c = new FakeConnection(ws, req.headers.authorization);
          m.connections.push(c);
          for (const w of m.waiters.splice(0)) w(c);
        });
        resolve(m);
      });
    });
  }

  /** The next connection (or the n-th, counting from 1). */
  connection(n = this.connections.length + 1): Promise<FakeConnection> {
    const have = this.connections[n - 1];
    if (have) return Promise.resolve(have);
    return new Promise((ok) => {
      const check = (): void => {
        const c = this.connections[n - 1];
        if (c) ok(c); else this.waiters.push(check);
      };
      this.waiters.push(check);
    });
  }

  close(): Promise<void> {
    for (const c of this.wss.clients) c.terminate();
    return new Promise((ok) => this.wss.close(() => ok()));
  }
}

/** Text of the updates with this key, joined (stdout/stderr/header values are [text, offsets, times]). */
export function text(updates: [string, unknown][], key: string): string {
  return updates.filter(([k]) => k === key).map(([, v]) => (v as [string])[0]).join('');
}
