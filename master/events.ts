import type { DashboardEvent } from '../protocol/api.js';
import { log } from './log.js';

export type EventListener = (event: DashboardEvent) => void;

/** Fan-out of build and worker changes to dashboards (`/api/v1/events`) and tests. */
export class EventBus {
  private readonly listeners = new Map<EventListener, (() => boolean) | undefined>();

  /**
   * `listening`: whether the listener wants events now (the events socket: while a dashboard is
   * connected). Publishers ask `size` first, so that no event is made for nobody — a loud build's
   * log text decoded from its frames' bytes, for one.
   */
  subscribe(listener: EventListener, listening?: () => boolean): () => void {
    this.listeners.set(listener, listening);
    return () => this.listeners.delete(listener);
  }

  publish(event: DashboardEvent): void {
    for (const [l, listening] of this.listeners) {
      if (listening && !listening()) continue;
      try {
        l(event);
      } catch (e) {
        log.error('event listener failed:', e);
      }
    }
  }

  /** How many listeners want events now. */
  get size(): number {
    let n = 0;
    for (const listening of this.listeners.values()) if (!listening || listening()) n++;
    return n;
  }
}
