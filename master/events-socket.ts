import type { IncomingMessage } from 'node:http';
import type { Duplex } from 'node:stream';
import { WebSocketServer, type WebSocket } from 'ws';
import type { DashboardEvent } from '../protocol/api.js';
import type { EventBus } from './events.js';
import { log } from './log.js';

/** The frame that tells a dashboard it missed events and must refetch (renderer/src/api.ts). */
export const RESYNC_FRAME = '{"type":"resync"}';

export interface EventsSocketLimits {
  /** Subscribers at a time, all addresses together (default 1000); the next is refused with 503. */
  maxSubscribers?: number;
  /** Subscribers at a time from one client address (default 20); the next is refused with 429. */
  maxPerAddress?: number;
  /** A subscriber with more than this many bytes unsent misses events until it has caught up, then gets `resync` (default 1 MiB). */
  maxBuffered?: number;
  /** A subscriber that stays behind this long is closed (default 60 s). */
  stuckMs?: number;
}

interface Subscriber {
  ws: WebSocket;
  address: string;
  /** Events frames waiting for the snapshot to be sent; null once live. */
  pending: Buffer[] | null;
  /** Since when this subscriber misses events (its buffer is over the bound); null when in step. */
  laggingSince: number | null;
}

/**
 * `GET /api/v1/events`: a WebSocket stream of DashboardEvent frames, starting with a snapshot.
 *
 * One loud build must not cost the master memory or CPU per dashboard: each event is encoded
 * once and the same buffer is queued on every socket; a socket with more than `maxBuffered`
 * bytes unsent gets nothing more (not even state events: it refetches all state anyway) until
 * it has drained, then one `{"type":"resync"}` frame; one that stays behind `stuckMs` is
 * closed. Subscribers are capped overall and per client address.
 */
export class EventsSocket {
  private readonly wss = new WebSocketServer({ noServer: true, maxPayload: 64 * 1024 });
  private readonly subscribers = new Set<Subscriber>();
  private readonly perAddress = new Map<string, number>();
  private readonly unsubscribe: () => void;
  private readonly sweep: ReturnType<typeof setInterval>;
  private readonly limits: Required<EventsSocketLimits>;

  constructor(
    bus: EventBus, private readonly snapshot: () => Promise<DashboardEvent[]>, limits: EventsSocketLimits = {},
    /** The client address of a request (trusted-proxy aware); default the socket's peer. */
    private readonly addressOf: (req: IncomingMessage) => string = (req) => req.socket.remoteAddress ?? 'unknown',
  ) {
    this.limits = {
      maxSubscribers: limits.maxSubscribers ?? 1000, maxPerAddress: limits.maxPerAddress ?? 20,
      maxBuffered: limits.maxBuffered ?? 1024 * 1024, stuckMs: limits.stuckMs ?? 60_000,
    };
    // Made and encoded only when a dashboard listens: a loud build's log chunks (tens of MB)
    // would otherwise be decoded and escaped into JSON for nobody, on the master's log path.
    this.unsubscribe = bus.subscribe((e) => this.publish(Buffer.from(JSON.stringify(e))), () => this.subscribers.size > 0);
    this.sweep = setInterval(() => this.publish(null), Math.max(1000, Math.min(this.limits.stuckMs / 4, 15_000)));
    this.sweep.unref();
  }

  get size(): number {
    return this.subscribers.size;
  }

  handleUpgrade(req: IncomingMessage, socket: Duplex, head: Buffer): void {
    const address = this.addressOf(req);
    const refuse = (status: string, why: string) => {
      socket.end(`HTTP/1.1 ${status}\r\ncontent-type: text/plain; charset=utf-8\r\nconnection: close\r\n\r\n${why}\n`);
    };
    if (this.subscribers.size >= this.limits.maxSubscribers) {
      return refuse('503 Service Unavailable', `refused: the master already streams events to ${this.limits.maxSubscribers} dashboards (eventSubscribers.max); try again later`);
    }
    if ((this.perAddress.get(address) ?? 0) >= this.limits.maxPerAddress) {
      return refuse('429 Too Many Requests', `refused: ${address} already has ${this.limits.maxPerAddress} event streams open (eventSubscribers.perAddress)`);
    }
    // Counted before the (asynchronous) handshake, so a burst cannot overshoot the caps.
    const sub: Subscriber = { ws: null as unknown as WebSocket, address, pending: [], laggingSince: null };
    this.subscribers.add(sub);
    this.perAddress.set(address, (this.perAddress.get(address) ?? 0) + 1);
    let released = false;
    const release = () => {
      if (released) return;
      released = true;
      this.subscribers.delete(sub);
      const n = (this.perAddress.get(address) ?? 1) - 1;
      if (n > 0) this.perAddress.set(address, n); else this.perAddress.delete(address);
    };
    socket.once('close', release);
    this.wss.handleUpgrade(req, socket, head, (ws) => {
      sub.ws = ws;
      ws.on('close', release);
      void this.accept(sub);
    });
  }

  private async accept(sub: Subscriber): Promise<void> {
    const { ws } = sub;
    ws.on('error', () => ws.terminate());
    ws.on('message', () => { /* the stream is one-way; frames from the dashboard are ignored */ });
    try {
      for (const e of await this.snapshot()) this.sendTo(sub, Buffer.from(JSON.stringify(e)), Date.now());
    } catch (e) {
      log.error('events snapshot failed:', e);
    }
    const pending = sub.pending ?? [];
    sub.pending = null;
    for (const frame of pending) this.sendTo(sub, frame, Date.now());
  }

  /** Queues one encoded frame on every live subscriber (null: only checks for stuck ones). */
  private publish(frame: Buffer | null): void {
    const now = Date.now();
    for (const sub of this.subscribers) {
      if (sub.pending) { if (frame) sub.pending.push(frame); continue; }
      this.sendTo(sub, frame, now);
    }
  }

  private sendTo(sub: Subscriber, frame: Buffer | null, now: number): void {
    const { ws } = sub;
    if (!ws || ws.readyState !== ws.OPEN) return;
    if (ws.bufferedAmount > this.limits.maxBuffered) {
      sub.laggingSince ??= now;
      if (now - sub.laggingSince >= this.limits.stuckMs) ws.terminate();
      return;
    }
    if (sub.laggingSince !== null) {
      sub.laggingSince = null;
      ws.send(RESYNC_FRAME);
    }
    if (frame) ws.send(frame, { binary: false });
  }

  close(): void {
    this.unsubscribe();
    clearInterval(this.sweep);
    for (const ws of this.wss.clients) ws.close(1001, 'master shutting down');
    this.wss.close();
  }
}
