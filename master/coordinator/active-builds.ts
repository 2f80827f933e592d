import type { StepView } from '../../protocol/api.js';
import type { BuildRow } from '../store/store.js';
import type { BuildUsage } from '../worker-bounds.js';
import type { WorkerSession } from './worker-sessions.js';

/** A build handed to a worker: the attempt the master holds, and what it has received of it. */
export interface ActiveBuild {
  row: BuildRow;
  session: WorkerSession;
  steps: StepView[];
  /** What this attempt has put on the master, checked against the spec and the caps. */
  usage: BuildUsage;
  /** FEATURE_LOG_ACK: how much of this attempt's log the master has (the next offset it expects); unset without a shared log store. */
  logOffset?: number;
  /** A gap in this attempt's log offsets was noted (once an attempt). */
  logGapNoted?: boolean;
  /** Runs out when the build has been frozen longer than its builder allows. */
  frozenTimer?: NodeJS.Timeout | undefined;
  /** [provenance] The spec sent with this attempt and the artifacts it uploaded, that its statement must match. */
  sent?: unknown;
  received?: { name: string; size: number; sha256: string }[];
}

/**
 * The builds running on this master's workers, by id, and how many per builder (fair share).
 * Invariant: a worker message changes a build only through the entry here whose session and
 * attempt it comes from (the coordinator checks both before it looks further).
 */
export class ActiveBuilds {
  private readonly byId = new Map<number, ActiveBuild>();
  private readonly perBuilder = new Map<string, number>();

  get size(): number {
    return this.byId.size;
  }

  get(id: number): ActiveBuild | undefined {
    return this.byId.get(id);
  }

  values(): IterableIterator<ActiveBuild> {
    return this.byId.values();
  }

  /** The entry for `id` only when it is this session's and attempt's. */
  current(id: number, session: WorkerSession, attempt: number): ActiveBuild | undefined {
    const a = this.byId.get(id);
    return a && a.session === session && a.row.attempt === attempt ? a : undefined;
  }

  add(a: ActiveBuild): void {
    this.byId.set(a.row.id, a);
    this.perBuilder.set(a.row.builder, (this.perBuilder.get(a.row.builder) ?? 0) + 1);
  }

  /** Forgets the build; returns what was there. */
  remove(id: number): ActiveBuild | undefined {
    const a = this.byId.get(id);
    if (!a) return undefined;
    this.byId.delete(id);
    const n = (this.perBuilder.get(a.row.builder) ?? 1) - 1;
    if (n > 0) this.perBuilder.set(a.row.builder, n);
    else this.perBuilder.delete(a.row.builder);
    return a;
  }

  runningOf(builder: string): number {
    return this.perBuilder.get(builder) ?? 0;
  }
}
