import type { ArtifactRow, BuildPatch, BuildRow, StepRow } from './store.js';

/**
 * Several masters on one store (PostgreSQL): how a master takes a build for one of its
 * workers, holds it, and is kept from touching it once it has lost it.
 *
 * - **Membership.** Each master process joins with a fresh id (`masters` row) and a lease
 *   (`alive_until`, the database's clock), renewed every third of the lease. A renewal that
 *   finds the lease already run out fails: that master must step down (drop what it holds,
 *   join again under a new id). It never extends a lease it lost.
 * - **Claim.** A queued build leaves the queue only through `claim`: one statement that locks
 *   the row with `FOR UPDATE SKIP LOCKED`, checks it is still queued at the attempt the master
 *   saw, and makes it `running` as attempt + 1 held by this master. Two masters never both
 *   succeed; the loser moves on (SKIP LOCKED: it does not even wait).
 * - **Fencing.** Every write about a running attempt (`update`) names the attempt and the
 *   holder and lands only while the row still has that attempt, that holder, and the
 *   holder's lease has not run out — checked by the database in the same statement. A master
 *   that was paused, partitioned or killed and restarted cannot change the build any more.
 * - **Release and adoption.** A master that loses a worker's connection releases its attempts
 *   (holder NULL, `orphan_until` = now + lease); the worker, reconnecting to any master, names
 *   them, and that master `adopt`s each one that is still this worker's current attempt.
 * - **Reaping.** Any master requeues (`reap`) attempts whose holder's lease ran out or whose
 *   release window passed without their worker: only then does a build run again.
 * - **Wake-up.** `wake()` sends a NOTIFY naming the sender; `onWake` hears those of the other
 *   masters and the reaper's (a master's own changes are in its queue already). It is never
 *   the record: a woken master re-reads the queued rows.
 */
export interface ClaimStore {
  /** This master's id in the farm. */
  readonly holder: string;
  /** Joins (or re-joins under a new id) with a lease of `leaseMs`. */
  join(url: string, leaseMs: number): Promise<void>;
  /** Extends this master's lease; false when it had run out (the caller steps down). */
  renew(leaseMs: number): Promise<boolean>;
  /** Ends this master's lease (a clean shutdown): its attempts wait `windowMs` for their workers to be adopted elsewhere, then are reaped. */
  leave(windowMs?: number): Promise<void>;

  /** Queued builds, oldest first. */
  listQueued(): Promise<BuildRow[]>;
  /** Takes queued build `id`, last seen at attempt `seenAttempt`, for `worker`; null if it is not queued at that attempt any more. */
  claim(id: number, seenAttempt: number, worker: string, startedAt: string): Promise<BuildRow | null>;
  /**
   * A write about build `id` at `attempt`: while it runs, only by its holder (this master,
   * lease valid); while it is queued (`queued: true`), only if nobody claimed it meanwhile.
   * False when fenced off. A patch to `queued` also clears the holder.
   */
  update(id: number, fence: { attempt: number; queued?: boolean }, patch: BuildPatch): Promise<boolean>;
  /** A step row of a running attempt, stored only under the same fence as `update`; false when fenced off. */
  putStep(attempt: number, row: StepRow): Promise<boolean>;
  /** An artifact row of a running attempt, under the same fence. */
  putArtifact(attempt: number, row: ArtifactRow): Promise<boolean>;
  /** Gives up holding these attempts of a lost worker: they wait `windowMs` to be adopted, then are reaped. */
  release(builds: { id: number; attempt: number }[], windowMs: number): Promise<void>;
  /** Takes over build `id` at `attempt` for `worker` (the authenticated name): null unless it is that worker's running attempt. */
  adopt(id: number, attempt: number, worker: string): Promise<BuildRow | null>;
  /** Requeues attempts nobody holds any more (and fails those past `maxAttempts`); returns the builds changed, at the attempt they had. */
  reap(maxAttempts: number, at: string): Promise<{ id: number; attempt: number; state: 'queued' | 'finished' }[]>;

  /** Takes or renews the singleton lease `name` for `ms`; false while another master holds it. */
  lease(name: string, ms: number): Promise<boolean>;
  /** Gives the lease up (stepping down). */
  unlease(name: string): Promise<void>;

  /** The ids of the masters whose leases are live. */
  liveMasters(): Promise<string[]>;
  /** Wakes every master (NOTIFY); they re-read the queue. */
  wake(): Promise<void>;
  /** Hears wake-ups (LISTEN on a connection of its own); returns the unsubscribe. */
  onWake(listener: () => void): Promise<() => Promise<void>>;
}
