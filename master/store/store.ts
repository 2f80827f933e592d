import type { BuildOutcome, BuildState, BuildTrigger, Verdict } from '../../protocol/api.js';
import type { BuildResult } from '../../protocol/worker-messages.js';
import type { ClaimStore } from './claims.js';
import type { ReplayGuard } from '../sources/webhook-dedupe.js';

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

  /** Present when several masters may share this store (PostgreSQL): claims, fences and leases (claims.ts). */
  readonly claims?: ClaimStore;
  /** Present on PostgreSQL: webhook replay protection shared by several masters (postgres-webhooks.ts). */
  readonly webhooks?: ReplayGuard;

  createToken(row: TokenRow): Promise<void>;
  getToken(name: string): Promise<TokenRow | null>;
  listTokens(): Promise<TokenRow[]>;
  /**
   * The names of revoked tokens: what a master checks its connected workers against every
   * half second (worker-hub.ts), so it reads the few revoked rows rather than every token.
   */
  listRevokedTokenNames(): Promise<string[]>;
  revokeToken(name: string, at: string): Promise<boolean>;
  /** [provenance] Replaces (or, with null, removes) the worker key of an active token; false when there is none. */
  setWorkerKey(name: string, key: string | null): Promise<boolean>;
  /**
   * [cloud] Spends a one-time token: sets its `usedAt` if it is one-time, unused, unrevoked and
   * not expired at `at`, in one statement (two connections racing with it: one wins). False otherwise.
   */
  useOneTimeToken(name: string, at: string): Promise<boolean>;
  /** [cloud] Deletes the named one-time credentials (never another token, whatever the name); how many went. For retention. */
  deleteOneTimeTokens(names: string[]): Promise<number>;
  /** [cloud] Adds instance time to a cloud provisioner's row of `day` (YYYY-MM-DD, UTC). */
  addCloudUsage(provisioner: string, day: string, instanceMs: number): Promise<void>;
  /** [cloud] A provisioner's instance time per day from `sinceDay` on, oldest first. */
  listCloudUsage(provisioner: string, sinceDay: string): Promise<{ day: string; instanceMs: number }[]>;

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

  /** Records a verified upload; without `attempt`, it is the build row's current attempt (the one the coordinator accepts messages from). */
  putArtifact(row: ArtifactRow): Promise<void>;
  /**
   * The artifacts of the build's current attempt (and rows from before attempts were recorded):
   * never those of an earlier, requeued or refused attempt. `updateBuild` to `state: 'queued'`
   * removes a build's artifact rows in the same write: a queued build has no accepted attempt.
   */
  listArtifacts(buildId: number): Promise<ArtifactRow[]>;
  /** Removes the artifact rows one attempt uploaded (a refused attempt: they must never be listed, served or bundled). */
  deleteArtifacts(buildId: number, attempt: number): Promise<void>;

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

  // [crowd] — invitations, volunteers, trust, credit, capacity.
  createInvite(row: InviteRow): Promise<void>;
  listInvites(): Promise<InviteRow[]>;
  getInviteByCodeHash(codeHash: string): Promise<InviteRow | null>;
  /** False when there is no such invite or it was revoked already. */
  revokeInvite(id: string, at: string): Promise<boolean>;
  /**
   * One join, in one transaction: checks the invite (if any) is not revoked, expired at
   * `e.at` or used up, and spends one use; finds the volunteer by public key (refusing a
   * banned one; updating display name and listed flag) or creates it (with its first trust
   * event); creates the worker token. Nothing is changed when it is refused.
   */
  enroll(e: Enrollment): Promise<EnrollOutcome>;
  getVolunteer(id: string): Promise<VolunteerRow | null>;
  listVolunteers(): Promise<VolunteerRow[]>;
  /** Sets a volunteer's trust and records why (a trust_events row), in one transaction. Resets the streak. */
  setTrust(change: TrustChange): Promise<void>;
  setStreak(volunteerId: string, streak: number): Promise<void>;
  /** Oldest first. */
  listTrustEvents(volunteerId: string): Promise<TrustEventRow[]>;
  /** Adds to a worker's all-time totals and to its row of `delta.day`. */
  addCredit(delta: CreditDelta): Promise<void>;
  /** Per-day rows from `sinceDay` (YYYY-MM-DD) on, by day then worker. */
  listCreditDays(sinceDay: string): Promise<CreditDayRow[]>;
  listCreditTotals(): Promise<CreditTotalRow[]>;
  /** Removes per-day rows before `day`. */
  pruneCreditDays(day: string): Promise<void>;
  /** One sample of how many workers were accepting, in the bucket of that hour of the week (0-167). */
  addCapacitySample(hourOfWeek: number, workers: number): Promise<void>;
  listCapacity(): Promise<CapacityRow[]>;
}

export type Trust = 'new' | 'trusted' | 'banned';
/** Who set a volunteer's trust: `join` (new on joining), `maintainer` (CLI, REST), `earned` (agreeing replicated results). */
export type TrustSource = 'join' | 'maintainer' | 'earned';

export interface InviteRow {
  id: string;
  /** sha256 hex of the code; the code itself is never stored. */
  codeHash: string;
  /** Granted to every worker that joins with it (and maxBuilds). */
  labels: string[];
  maxBuilds: number;
  maxUses: number;
  usesLeft: number;
  expiresAt: string | null;
  note: string;
  createdAt: string;
  revokedAt: string | null;
}

export interface VolunteerRow {
  id: string;
  /** The volunteer's Ed25519 identity key (SPKI DER, base64): same key, same volunteer. */
  publicKey: string;
  displayName: string;
  listed: boolean;
  trust: Trust;
  trustSource: TrustSource;
  /** Replicated results in a row that agreed with the majority. */
  streak: number;
  createdAt: string;
}

export interface TrustChange {
  volunteerId: string;
  trust: Trust;
  source: TrustSource;
  reason: string;
  at: string;
}

export interface TrustEventRow extends TrustChange {
  previous: Trust | null;
}

export interface Enrollment {
  inviteId: string | null;
  at: string;
  /** Used when no volunteer has this public key yet. */
  volunteer: VolunteerRow;
  /** Why the volunteer is new (its first trust event). */
  reason: string;
  token: TokenRow;
}

export type EnrollOutcome =
  | { ok: true; volunteer: VolunteerRow }
  | { ok: false; reason: 'unknown-code' | 'used-up' | 'expired' | 'revoked' | 'banned' | 'name-taken' };

export interface CreditCounts {
  builds: number;
  cpuMs: number;
  wallMs: number;
  agreed: number;
  disagreed: number;
}

export interface CreditDelta extends CreditCounts {
  /** YYYY-MM-DD (UTC). */
  day: string;
  worker: string;
  volunteerId: string | null;
}

export type CreditDayRow = CreditDelta;

export interface CreditTotalRow extends CreditCounts {
  worker: string;
  volunteerId: string | null;
}

export interface CapacityRow {
  hourOfWeek: number;
  samples: number;
  workersSum: number;
  workersMax: number;
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
  /** The volunteer who joined with this token ([crowd]); null for tokens made by `token create` (the maintainer's). */
  volunteerId?: string | null;
  /** The worker's own Ed25519 public key (SPKI DER, base64), sent when it joined. */
  workerKey?: string | null;
  /** [cloud] A one-time credential: good for one connection (`usedAt` set then), refused after `expiresAt` unused. */
  oneTime?: boolean;
  expiresAt?: string | null;
  usedAt?: string | null;
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
  /** The attempt that uploaded it; on write, absent means the build's current attempt; null: a row from before attempts were recorded. */
  attempt?: number | null;
}
