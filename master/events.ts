import type { DashboardEvent } from '../protocol/api.js';
import { log } from './log.js';

export type EventListener = (event: DashboardEvent) => void;

/** Fan-out of build and worker changes to dashboards (`/api/v1/events`) and tests. */
export class EventBus {
  private readonly listeners = new Set<EventListener>();

  subscribe(listener: EventListener): () => void {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  }

  publish(event: DashboardEvent): void {
    for (const l of this.listeners) {
      try {
        l(event);
      } catch (e) {
        log.error('event listener failed:', e);
      }
    }
  }

  get size(): number {
    return this.listeners.size;
  }
}
