import type { BuildWrites } from '../disk-space.js';
import type { ClaimStore } from '../store/claims.js';
import type { ArtifactRow, BuildPatch, BuildRow, StepRow, Store } from '../store/store.js';
import { isDiskFull } from '../disk-space.js';

/**
 * Where the coordinator writes what happens to a build. Two kinds:
 *
 * - in process (`inProcess`: SQLite, one master): the store is this master's alone; writes
 *   are plain, build-row changes kept and retried while the disk is full (BuildWrites); every
 *   call answers true.
 * - fenced (`fenced`: PostgreSQL, any number of masters): each write about an attempt names
 *   it and lands only while this master holds it (claims.ts); false means it does not any
 *   more, and the coordinator lets the build go without touching it again.
 */
export interface AttemptRecord {
  /** Attempt `attempt` (row.attempt + 1) of a queued build starts on `worker`; false: another master took it first. */
  start(row: BuildRow, attempt: number, worker: string, startedAt: string): Promise<boolean>;
  /** A change to a build at `row.attempt`: a running one of this master's, or (`queued`) one nobody claimed meanwhile. */
  update(row: BuildRow, patch: BuildPatch, queued?: boolean): Promise<boolean>;
  /** A running attempt goes back to the queue, its steps cleared. */
  requeue(row: BuildRow, patch: BuildPatch): Promise<boolean>;
  step(row: BuildRow, step: StepRow): Promise<boolean>;
  artifact(row: BuildRow, artifact: ArtifactRow): Promise<boolean>;
}

export function inProcessRecord(store: Store, writes: BuildWrites): AttemptRecord {
  return {
    start: async (row, attempt, worker, startedAt) => {
      await store.updateBuild(row.id, { state: 'running', worker, attempt, startedAt, message: null });
      return true;
    },
    update: async (row, patch) => { await writes.update(row.id, patch); return true; },
    requeue: async (row, patch) => {
      await store.clearSteps(row.id).catch((e: unknown) => { if (!isDiskFull(e)) throw e; });
      await writes.update(row.id, patch);
      return true;
    },
    step: async (_row, step) => { await store.putStep(step); return true; },
    artifact: async (_row, a) => { await store.putArtifact(a); return true; },
  };
}

export function fencedRecord(claims: ClaimStore): AttemptRecord {
  return {
    start: async (row, attempt, worker, startedAt) => (await claims.claim(row.id, attempt - 1, worker, startedAt)) !== null,
    update: (row, patch, queued = false) => claims.update(row.id, { attempt: row.attempt, queued }, patch),
    requeue: (row, patch) => claims.update(row.id, { attempt: row.attempt }, patch),
    step: (row, step) => claims.putStep(row.attempt, step),
    artifact: (row, a) => claims.putArtifact(row.attempt, a),
  };
}
