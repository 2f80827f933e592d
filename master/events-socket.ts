import type { IncomingMessage } from 'node:http';
import type { Duplex } from 'node:stream';
import { WebSocketServer, type WebSocket } from 'ws';
import type { DashboardEvent } from '../protocol/api.js';
import type { EventBus } from './events.js';

/** A dashboard that falls this far behind is disconnected (it reconnects and reloads) instead of growing the master's memory. */
const MAX_BUFFERED = 8 * 1024 * 1024;

/** `GET /api/v1/events`: a WebSocket stream of DashboardEvent frames, starting with a snapshot. */
export class EventsSocket {
  private readonly wss = new WebSocketServer({ noServer: true, maxPayload: 64 * 1024 });

  constructor(private readonly bus: EventBus, private readonly snapshot: () => Promise<DashboardEvent[]>) {}

  handleUpgrade(req: IncomingMessage, socket: Duplex, head: Buffer): void {
    this.wss.handleUpgrade(req, socket, head, (ws) => void this.accept(ws));
  }

  private async accept(ws: WebSocket): Promise<void> {
    const send = (e: DashboardEvent) => {
      if (ws.readyState !== ws.OPEN) return;
      if (ws.bufferedAmount > MAX_BUFFERED) { ws.terminate(); return; }
      ws.send(JSON.stringify(e));
    };
    const pending: DashboardEvent[] = [];
    let live = false;
    const unsubscribe = this.bus.subscribe((e) => (live ? send(e) : pending.push(e)));
    ws.on('close', unsubscribe);
    ws.on('error', () => ws.terminate());
    ws.on('message', () => { /* the stream is one-way; frames from the dashboard are ignored */ });
    try {
      for (const e of await this.snapshot()) send(e);
    } catch (e) {
      console.error('crowdbake master: events snapshot failed:', e);
    }
    for (const e of pending) send(e);
    live = true;
  }

  close(): void {
    for (const ws of this.wss.clients) ws.close(1001, 'master shutting down');
    this.wss.close();
  }
}
