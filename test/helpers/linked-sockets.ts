import { EventEmitter } from 'node:events';
import type WebSocket from 'ws';

/**
 * An in-memory, linked pair of sockets (as the MCP SDK's InMemoryTransport), shaped like the
 * part of ws's WebSocket that master/worker-hub.ts and worker/master-link.ts use: what one end
 * sends, the other receives, in order, on a later turn of the event loop. Not a stand-in for
 * something that cannot run here (sockets can) but a way to drive the real hub, coordinator
 * and link in milliseconds, with no port, no process and no timer.
 *
 * Backpressure: `pauseReading()` on one end holds what the other sends; the sender's
 * `bufferedAmount` counts the bytes held, and its send callbacks fire only once they are
 * delivered (ws calls back when a frame is written out: the same contract, one hop shorter).
 */
export class LinkedSocket extends EventEmitter {
  readonly CONNECTING = 0;
  readonly OPEN = 1;
  readonly CLOSING = 2;
  readonly CLOSED = 3;
  readyState = 0;
  peer!: LinkedSocket;
  /** Frames sent by the peer, not yet delivered here. */
  private readonly inbox: { data: Buffer; binary: boolean; done?: ((e?: Error) => void) | undefined }[] = [];
  private paused = false;
  private pumping = false;
  /** Bytes this end sent that the peer has not read yet. */
  bufferedAmount = 0;

  /** As ws's: `send(data, cb)` or `send(data, { binary }, cb)`; bytes go as a binary frame unless `binary: false`. */
  send(data: string | Uint8Array, options?: { binary?: boolean } | ((e?: Error) => void), callback?: (e?: Error) => void): void {
    const cb = typeof options === 'function' ? options : callback;
    const binary = (typeof options === 'object' ? options.binary : undefined) ?? typeof data !== 'string';
    if (this.readyState !== this.OPEN) {
      cb?.(new Error('socket not open'));
      return;
    }
    // A copy, as the bytes on a wire would be: the sender may reuse its buffer.
    const bytes = typeof data === 'string' ? Buffer.from(data) : Buffer.from(data);
    this.bufferedAmount += bytes.length;
    this.peer.inbox.push({ data: bytes, binary, done: cb });
    this.peer.pump();
  }

  pauseReading(): void {
    this.paused = true;
  }

  resumeReading(): void {
    this.paused = false;
    this.pump();
  }

  ping(): void {
    if (this.readyState !== this.OPEN) return;
    setImmediate(() => {
      if (this.peer.readyState !== this.OPEN) return;
      this.peer.emit('ping');
      if (this.readyState === this.OPEN) this.emit('pong');
    });
  }

  close(code = 1000, reason = ''): void {
    this.shut(code, reason);
  }

  /** Drops the connection at once (both ends see code 1006), as a dead TCP connection would. */
  terminate(): void {
    this.shut(1006, '');
  }

  private shut(code: number, reason: string): void {
    if (this.readyState >= this.CLOSING) return;
    this.readyState = this.CLOSED;
    const peer = this.peer;
    for (const side of [this, peer]) {
      for (const m of side.inbox.splice(0)) m.done?.(new Error('socket closed'));
      side.bufferedAmount = 0;
    }
    setImmediate(() => this.emit('close', code, Buffer.from(reason)));
    if (peer.readyState < peer.CLOSING) {
      peer.readyState = peer.CLOSED;
      setImmediate(() => peer.emit('close', code, Buffer.from(reason)));
    }
  }

  private pump(): void {
    if (this.pumping) return;
    this.pumping = true;
    setImmediate(() => {
      this.pumping = false;
      while (!this.paused && this.inbox.length && this.readyState === this.OPEN) {
        const m = this.inbox.shift()!;
        this.peer.bufferedAmount -= m.data.length;
        this.emit('message', m.data, m.binary);
        m.done?.();
      }
    });
  }
}

/**
 * Two linked ends: `[worker, master]`. Both open on the next turn: the worker's end emits
 * `upgrade` (with `headers`, as the master's answer to the upgrade would carry) and `open`.
 */
export function linkedPair(headers: Record<string, string> = {}): [LinkedSocket, LinkedSocket] {
  const a = new LinkedSocket();
  const b = new LinkedSocket();
  a.peer = b;
  b.peer = a;
  setImmediate(() => {
    a.readyState = a.OPEN;
    b.readyState = b.OPEN;
    a.emit('upgrade', { headers, socket: {} });
    a.emit('open');
  });
  return [a, b];
}

/** The ends typed as ws's WebSocket, which is what the hub and the link are written against. */
export function asWebSocket(s: LinkedSocket): WebSocket {
  return s as unknown as WebSocket;
}
