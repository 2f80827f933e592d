import type { Capabilities, MasterMessage } from '../../protocol/worker-messages.js';
import type { WorkerOffer } from '../matching.js';

/** A connected, authenticated worker, as the worker hub hands it over. */
export interface WorkerSession extends WorkerOffer {
  /** Builds assigned to this worker that it has not yet reported finished. */
  readonly builds: Set<number>;
  readonly frozen: Set<number>;
  readonly capabilities: Capabilities;
  /** False while the volunteer's desktop is in use, paused, outside its schedule, …; `reason` says which. */
  accepting: boolean;
  reason: string;
  /** [cloud] Set once the worker is leaving (its `drain`, or the admin's): it gets nothing new. */
  draining?: { now: boolean; reason: string } | null;
  /** [cloud] Builds it may still be given (a one-time credential's session: 1); absent: no limit. */
  buildsLeft?: number;
  /** [cloud] A cloud worker (logged in with a one-time credential): `cloud: never` builders are not sent there. */
  cloud?: boolean;
  send(message: MasterMessage): void;
  /** Closes the connection; `retry`: the worker should connect again (else it is told it was replaced). */
  close(why: string, retry?: boolean): void;
}

/** The workers connected to this master, by name (one session a name). */
export class WorkerSessions {
  private readonly byName = new Map<string, WorkerSession>();

  get size(): number {
    return this.byName.size;
  }

  add(session: WorkerSession): void {
    this.byName.set(session.name, session);
  }

  /** Forgets the session if it is still the one connected under its name; says whether it was. */
  remove(session: WorkerSession): boolean {
    if (this.byName.get(session.name) !== session) return false;
    this.byName.delete(session.name);
    return true;
  }

  get(name: string): WorkerSession | undefined {
    return this.byName.get(name);
  }

  isCurrent(session: WorkerSession): boolean {
    return this.byName.get(session.name) === session;
  }

  values(): IterableIterator<WorkerSession> {
    return this.byName.values();
  }

  /**
   * Connected workers a build may go to: not those in `exclude` (they ran another replica),
   * nor `barred` (they broke its bounds), nor — for a distinct-owners group — one whose owner
   * ran a replica or is unknown; with `noCloud`, no cloud worker. Each offer's `running` is brought up to date.
   */
  *offers(exclude?: ReadonlySet<string>, barred?: ReadonlySet<string>, owners?: ReadonlySet<string>, noCloud = false): Iterable<WorkerSession> {
    for (const s of this.byName.values()) {
      // [cloud] `cloud: never` builders are not sent to cloud workers.
      if (exclude?.has(s.name) || barred?.has(s.name) || (noCloud && s.cloud)) continue;
      // A worker whose owner is unknown cannot be told apart: it gets no replica of a distinct-owners group.
      if (owners && (s.owner === undefined || owners.has(s.owner))) continue;
      (s as { running: number }).running = s.builds.size;
      yield s;
    }
  }
}
