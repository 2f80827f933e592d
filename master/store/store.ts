import type { BuildOutcome, BuildState, BuildTrigger, Verdict } from '../../protocol/api.js';
import type { BuildResult } from '../../protocol/worker-messages.js';

/**
 * The master's durable state. One interface, two implementations (SQLite embedded by
 * default; PostgreSQL for several masters). Methods are async so that both fit; the SQLite
 * one answers synchronously inside the promise.
 *
 * Invariant: a build row is written before anyone is told its id, so a queued build
 * survives any crash after `POST .../builds` answered.
 */
export interface Store {
  close(): Promise<void>;

  createToken(row: TokenRow): Promise<void>;
  getToken(name: string): Promise<TokenRow | null>;
  listTokens(): Promise<TokenRow[]>;
  revokeToken(name: string, at: string): Promise<boolean>;

  upsertWorker(row: WorkerRow): Promise<void>;
  listWorkers(): Promise<WorkerRow[]>;

  insertBuild(row: NewBuild): Promise<BuildRow>;
  updateBuild(id: number, patch: BuildPatch): Promise<void>;
  getBuild(id: number): Promise<BuildRow | null>;
  listBuilds(query: BuildQuery): Promise<BuildRow[]>;
  listUnfinishedBuilds(): Promise<BuildRow[]>;

  putStep(row: StepRow): Promise<void>;
  clearSteps(buildId: number): Promise<void>;
  listSteps(buildIds: number[]): Promise<StepRow[]>;

  putArtifact(row: ArtifactRow): Promise<void>;
  listArtifacts(buildId: number): Promise<ArtifactRow[]>;

  /**
   * Inserts a build and its replicas in one transaction: the first row is the group (the
   * build that was asked for), every row gets a `pending` verification row.
   */
  insertBuildGroup(rows: NewBuild[]): Promise<BuildRow[]>;
  /** The verification rows of one group, by build id. */
  listVerifications(groupId: number): Promise<VerificationRow[]>;
  getVerification(buildId: number): Promise<VerificationRow | null>;
  /** Groups not decided yet (some verdict still `pending`), for recovery after a restart. */
  listPendingVerifications(): Promise<VerificationRow[]>;
  setVerdict(buildId: number, verdict: Verdict, detail: string | null): Promise<void>;
  flagWorker(row: WorkerFlagRow): Promise<void>;
  listWorkerFlags(): Promise<WorkerFlagRow[]>;
}

export interface VerificationRow {
  buildId: number;
  groupId: number;
  replicas: number;
  verdict: Verdict;
  detail: string | null;
}

export interface WorkerFlagRow {
  worker: string;
  buildId: number;
  reason: string;
  at: string;
}

export interface TokenRow {
  name: string;
  /** sha256 hex of the secret; the secret itself is never stored. */
  hash: string;
  /** Labels the admin granted: the only ones builders' `requires.labels` are matched against. */
  labels: string[];
  /** Builds at once the admin granted; the master runs min(this, what the worker offers). */
  maxBuilds: number;
  createdAt: string;
  revokedAt: string | null;
}

export interface WorkerRow {
  name: string;
  /** The last capabilities the worker reported, as JSON text. */
  capabilities: string;
  lastSeenAt: string;
}

export interface NewBuild {
  builder: string;
  revision: string | null;
  reason: string | null;
  queuedAt: string;
  /** The branch the build is for; null: the builder's. */
  branch?: string | null;
  /** Default `force`. */
  trigger?: BuildTrigger;
  rebuildOf?: number | null;
}

export interface BuildRow extends NewBuild {
  id: number;
  branch: string | null;
  trigger: BuildTrigger;
  rebuildOf: number | null;
  supersededBy: number | null;
  state: BuildState;
  result: BuildOutcome | null;
  worker: string | null;
  attempt: number;
  message: string | null;
  startedAt: string | null;
  finishedAt: string | null;
}

export type BuildPatch = Partial<Pick<BuildRow, 'state' | 'result' | 'worker' | 'attempt' | 'message' | 'startedAt' | 'finishedAt' | 'supersededBy' | 'revision'>>;

export interface BuildQuery {
  builder?: string;
  state?: BuildState;
  limit: number;
  /** Only builds with a smaller id (for paging back through history). */
  beforeId?: number;
}

export interface StepRow {
  buildId: number;
  index: number;
  name: string;
  state: 'pending' | 'running' | 'finished';
  result: BuildResult | null;
  exitCode: number | null;
}

export interface ArtifactRow {
  buildId: number;
  name: string;
  size: number;
  sha256: string;
  worker: string | null;
}
