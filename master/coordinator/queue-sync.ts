import type { BuildRow } from '../store/store.js';
import type { BuildQueue } from './build-queue.js';

/**
 * Brings this master's view of the shared queue in line with the store's queued rows (several
 * masters: the table is the record; NOTIFY only says when to look). Rows that left the queue
 * (claimed, cancelled, finished by another master) or came back at another attempt leave it;
 * new ones, not running here, join it. Returns how many were added.
 */
export function syncQueue(queue: BuildQueue, queued: readonly BuildRow[], runningHere: (id: number) => boolean): number {
  const seen = new Map(queued.map((r) => [r.id, r]));
  for (const [, q] of [...queue.builders()]) {
    for (const b of [...q]) {
      const r = seen.get(b.id);
      if (!r || r.attempt !== b.attempt) queue.dequeue(b.id);
    }
  }
  let added = 0;
  for (const r of queued) {
    if (queue.has(r.id) || runningHere(r.id)) continue;
    queue.enqueue(r);
    added++;
  }
  return added;
}
