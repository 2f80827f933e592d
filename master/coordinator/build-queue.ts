import type { BuildRow } from '../store/store.js';

/**
 * The queued builds this master knows of, per builder, each list oldest first (by id; a
 * requeued build keeps its place). With one master it is the queue itself, loaded from the
 * store at start and kept in step with every write; with several masters on one PostgreSQL
 * it is each master's view of the shared queue, and a build leaves it for a worker only
 * through a claim in the store (master/store/claims.ts).
 */
export class BuildQueue {
  private readonly queues = new Map<string, BuildRow[]>();
  private readonly byId = new Map<number, BuildRow>();

  get size(): number {
    return this.byId.size;
  }

  /** Each builder with queued builds, and its list (oldest first; do not modify it). */
  builders(): IterableIterator<[string, readonly BuildRow[]]> {
    return this.queues.entries();
  }

  /** The queued builds of one builder, oldest first. */
  of(builder: string): readonly BuildRow[] {
    return this.queues.get(builder) ?? [];
  }

  has(id: number): boolean {
    return this.byId.has(id);
  }

  /** The queued row of build `id`, or undefined. */
  get(id: number): BuildRow | undefined {
    return this.byId.get(id);
  }

  enqueue(row: BuildRow): void {
    let q = this.queues.get(row.builder);
    if (!q) this.queues.set(row.builder, (q = []));
    let i = q.length;
    while (i > 0 && q[i - 1]!.id > row.id) i--;
    q.splice(i, 0, row);
    this.byId.set(row.id, row);
  }

  /** Takes the build out of the queue; null when it is not queued here. */
  dequeue(id: number): BuildRow | null {
    const row = this.byId.get(id);
    if (!row) return null;
    const q = this.queues.get(row.builder)!;
    q.splice(q.indexOf(row), 1);
    if (q.length === 0) this.queues.delete(row.builder);
    this.byId.delete(id);
    return row;
  }

  /** Takes every queued build of a builder out (the builder is gone). */
  dropBuilder(builder: string): BuildRow[] {
    const q = this.queues.get(builder) ?? [];
    this.queues.delete(builder);
    for (const row of q) this.byId.delete(row.id);
    return q;
  }
}
