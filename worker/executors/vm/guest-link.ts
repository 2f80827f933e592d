import type { Socket } from 'node:net';
import type { Readable, Writable } from 'node:stream';
import type { PortName } from './qemu.js';

const MAX_LINE = 64 * 1024;
const MAX_QUEUED_LINES = 1000;

/**
 * The host end of the agent's four virtio-serial ports (see agent-script.ts). `ctl` carries
 * text lines; `out`, `err` and `data` carry raw bytes, each transfer ended by the marker
 * `\x1ecb:NONCE\x1e` with a fresh random nonce, so no byte of output needs escaping.
 */
export class GuestLink {
  private lineBuf = '';
  private readonly lines: string[] = [];
  private lineWaiter: { resolve: (l: string) => void; reject: (e: Error) => void } | null = null;
  private closedWith: Error | null = null;
  private readonly readers: Record<'out' | 'err' | 'data', MarkerReader>;

  constructor(private readonly sockets: Record<PortName, Socket>) {
    const ctl = sockets.ctl;
    ctl.setEncoding('utf8');
    ctl.on('data', (d: string) => this.onCtl(d));
    this.readers = { out: new MarkerReader(sockets.out), err: new MarkerReader(sockets.err), data: new MarkerReader(sockets.data) };
    for (const s of Object.values(sockets)) {
      s.on('error', () => {});
      s.on('close', () => this.close(new Error('the VM closed its channel to the host')));
    }
  }

  send(line: string): void {
    if (this.closedWith) throw this.closedWith;
    this.sockets.ctl.write(`${line}\n`);
  }

  /** The next line from the agent; rejects once the link is closed. */
  nextLine(): Promise<string> {
    const l = this.lines.shift();
    if (l !== undefined) return Promise.resolve(l);
    if (this.closedWith) return Promise.reject(this.closedWith);
    if (this.lineWaiter) return Promise.reject(new Error('two readers on the control channel'));
    return new Promise((resolve, reject) => { this.lineWaiter = { resolve, reject }; });
  }

  /** Forwards a step's stdout and stderr to the sinks (with backpressure) until both markers arrive. */
  stepOutput(nonce: string, stdout: Writable, stderr: Writable): Promise<void> {
    return Promise.all([this.readers.out.expect(nonce, stdout), this.readers.err.expect(nonce, stderr)]).then(() => {});
  }

  /** Forwards the data port into `sink` until the marker; does not end the sink. */
  receiveData(nonce: string, sink: Writable): Promise<void> {
    return this.readers.data.expect(nonce, sink);
  }

  /** Streams `source` into the data port (with backpressure), leaving the port open. */
  sendData(source: Readable): Promise<void> {
    const port = this.sockets.data;
    return new Promise((resolve, reject) => {
      source.on('data', (c: Buffer) => {
        if (!port.write(c)) {
          source.pause();
          port.once('drain', () => source.resume());
        }
      });
      source.on('end', () => resolve());
      source.on('error', reject);
      port.once('close', () => reject(new Error('the VM closed its data channel')));
    });
  }

  close(reason: Error): void {
    if (this.closedWith) return;
    this.closedWith = reason;
    this.lineWaiter?.reject(reason);
    this.lineWaiter = null;
    for (const r of Object.values(this.readers)) r.fail(reason);
    for (const s of Object.values(this.sockets)) s.destroy();
  }

  private onCtl(d: string): void {
    this.lineBuf += d;
    // The guest is not trusted: a flood without newlines must not grow the host's memory.
    if (this.lines.length > MAX_QUEUED_LINES || (this.lineBuf.length > MAX_LINE && !this.lineBuf.slice(0, MAX_LINE).includes('\n'))) {
      this.close(new Error('the VM sent too much on its control channel'));
      return;
    }
    let nl: number;
    while ((nl = this.lineBuf.indexOf('\n')) >= 0) {
      const line = this.lineBuf.slice(0, nl).replace(/\r$/, '');
      this.lineBuf = this.lineBuf.slice(nl + 1);
      const w = this.lineWaiter;
      this.lineWaiter = null;
      if (w) w.resolve(line);
      else this.lines.push(line);
    }
  }
}

/** Reads one socket; while a transfer is expected, passes bytes up to its marker to the sink. Bytes outside a transfer are dropped. */
class MarkerReader {
  private scanner: MarkerScanner | null = null;
  private sink: Writable | null = null;
  private settle: { resolve: () => void; reject: (e: Error) => void } | null = null;
  private waitingDrain = false;

  constructor(private readonly socket: Socket) {
    socket.on('data', (c: Buffer) => this.onData(c));
  }

  expect(nonce: string, sink: Writable): Promise<void> {
    if (this.scanner) return Promise.reject(new Error('a transfer is already in progress on this channel'));
    if (this.waitingDrain) {
      this.waitingDrain = false;
      this.socket.resume();
    }
    this.sink = sink;
    this.scanner = new MarkerScanner(Buffer.from(`\x1ecb:${nonce}\x1e`), (b) => this.forward(b));
    return new Promise((resolve, reject) => { this.settle = { resolve, reject }; });
  }

  fail(e: Error): void {
    const s = this.settle;
    this.scanner = null;
    this.settle = null;
    s?.reject(e);
  }

  private onData(chunk: Buffer): void {
    if (!this.scanner) return;
    if (this.scanner.push(chunk) !== null) {
      const s = this.settle;
      this.scanner = null;
      this.sink = null;
      this.settle = null;
      s?.resolve();
    }
  }

  private forward(b: Buffer): void {
    if (!this.sink || this.sink.write(b) || this.waitingDrain) return;
    this.waitingDrain = true;
    this.socket.pause();
    this.sink.once('drain', () => {
      this.waitingDrain = false;
      this.socket.resume();
    });
  }
}

/** Splits a byte stream at a marker, holding back only a tail that could be the marker's start. */
export class MarkerScanner {
  private held: Buffer = Buffer.alloc(0);

  constructor(private readonly marker: Buffer, private readonly emit: (b: Buffer) => void) {}

  /** Emits the bytes before the marker; returns what followed it once found, else null. */
  push(chunk: Buffer): Buffer | null {
    const buf = this.held.length ? Buffer.concat([this.held, chunk]) : chunk;
    const at = buf.indexOf(this.marker);
    if (at >= 0) {
      if (at > 0) this.emit(buf.subarray(0, at));
      this.held = Buffer.alloc(0);
      return buf.subarray(at + this.marker.length);
    }
    const keep = partialSuffix(buf, this.marker);
    if (buf.length > keep) this.emit(buf.subarray(0, buf.length - keep));
    this.held = Buffer.from(buf.subarray(buf.length - keep));
    return null;
  }
}

function partialSuffix(buf: Buffer, marker: Buffer): number {
  const first = marker[0]!;
  for (let i = buf.indexOf(first, Math.max(0, buf.length - marker.length + 1)); i !== -1; i = buf.indexOf(first, i + 1)) {
    if (marker.subarray(0, buf.length - i).equals(buf.subarray(i))) return buf.length - i;
  }
  return 0;
}
