import * as z from 'zod';
import { BuildResultSchema } from './worker-messages.js';

/**
 * The REST API's JSON shapes (`/api/v1`) and the dashboard event stream. The renderer and
 * the CLI read these; the master writes them.
 */

export const BuildStateSchema = z.enum(['queued', 'running', 'frozen', 'finished']);
export type BuildState = z.infer<typeof BuildStateSchema>;

/** How a finished build ended: a worker's result, or `superseded` (collapsed into a newer build of the same branch before it started). */
export const BuildOutcomeSchema = z.enum([...BuildResultSchema.options, 'superseded']);
export type BuildOutcome = z.infer<typeof BuildOutcomeSchema>;

/** Why a build was queued: a new commit seen by a change source, a user forcing it, or a rebuild of an earlier build. */
export const BuildTriggerSchema = z.enum(['change', 'force', 'rebuild']);
export type BuildTrigger = z.infer<typeof BuildTriggerSchema>;

export const StepViewSchema = z.object({
  name: z.string(),
  state: z.enum(['pending', 'running', 'finished']),
  result: BuildResultSchema.nullable(),
  exitCode: z.number().nullable(),
});
export type StepView = z.infer<typeof StepViewSchema>;

/**
 * `pending` until every replica has finished; then `verified` (in the majority), `disagreed`
 * (artifacts differ from the majority, or no majority among differing replicas) or
 * `unverified` (this replica failed, or too few succeeded to decide).
 */
export const VerdictSchema = z.enum(['pending', 'verified', 'disagreed', 'unverified']);
export type Verdict = z.infer<typeof VerdictSchema>;

export const VerificationViewSchema = z.object({
  /** The build that was asked for; its replicas point to it. */
  group: z.number(),
  replicas: z.number(),
  verdict: VerdictSchema,
  detail: z.string().nullable(),
  members: z.array(z.object({ id: z.number(), worker: z.string().nullable(), verdict: VerdictSchema })),
});
export type VerificationView = z.infer<typeof VerificationViewSchema>;

export const BuildViewSchema = z.object({
  id: z.number(),
  builder: z.string(),
  state: BuildStateSchema,
  result: BuildOutcomeSchema.nullable(),
  worker: z.string().nullable(),
  revision: z.string().nullable(),
  /** The branch the build is for (the change's branch; else the builder's). */
  branch: z.string().nullable().optional(),
  reason: z.string().nullable(),
  trigger: BuildTriggerSchema.optional(),
  /** The build this one rebuilds (`POST /builds/{id}/rebuild`). */
  rebuildOf: z.number().nullable().optional(),
  /** The newer build that superseded this one while it was queued (result `superseded`). */
  supersededBy: z.number().nullable().optional(),
  attempt: z.number(),
  message: z.string().nullable(),
  queuedAt: z.string(),
  startedAt: z.string().nullable(),
  finishedAt: z.string().nullable(),
  steps: z.array(StepViewSchema),
  /** Builds of a builder with `verify: { replicas }`: this build's verdict and its replicas. */
  verification: VerificationViewSchema.nullable().optional(),
  /** A queued build: why it waits (no worker can take it, the cloud's budget is spent, …); GET /builds/{id} only. */
  waitReason: z.string().nullable().optional(),
});
export type BuildView = z.infer<typeof BuildViewSchema>;

/** A mark on a worker whose results disagreed with other workers' (result verification). */
export const WorkerFlagSchema = z.object({ buildId: z.number(), reason: z.string(), at: z.string() });
export type WorkerFlag = z.infer<typeof WorkerFlagSchema>;

/** `draining`: finishing its builds, taking no new ones, then leaving (SIGTERM, `crowdbake drain`, the REST drain). */
export const WorkerStateSchema = z.enum(['idle', 'busy', 'frozen', 'draining', 'offline']);
export const WorkerViewSchema = z.object({
  name: z.string(),
  connected: z.boolean(),
  state: WorkerStateSchema,
  labels: z.array(z.string()),
  executors: z.array(z.string()),
  cpus: z.number().nullable(),
  memory: z.number().nullable(),
  os: z.string().nullable(),
  arch: z.string().nullable(),
  builds: z.array(z.number()),
  /** Whether it takes new builds now; `reason` says why not (desktop in use, paused, …). */
  accepting: z.boolean(),
  reason: z.string(),
  lastSeenAt: z.string().nullable(),
  /** Times this worker's artifacts disagreed with other workers' for the same build. */
  flags: z.array(WorkerFlagSchema).optional(),
});
export type WorkerView = z.infer<typeof WorkerViewSchema>;

/** `POST /api/v1/workers/{name}/drain`: the same body as the worker's own control API (control-api.ts). */
export { DrainRequestSchema } from './control-api.js';

/** [cloud] One cloud provisioner's pool (`GET /api/v1/cloud`). */
export const CloudViewSchema = z.object({
  name: z.string(),
  region: z.string(),
  min: z.number(),
  max: z.number(),
  budget: z.object({
    todayHours: z.number(), monthHours: z.number(),
    maxInstances: z.number().nullable(), hoursPerDay: z.number().nullable(), hoursPerMonth: z.number().nullable(),
  }),
  /** Why no instance starts now (a cap is reached), or null. */
  blocked: z.string().nullable(),
  lastError: z.string().nullable(),
  instances: z.array(z.object({
    worker: z.string(), id: z.string().nullable(), type: z.string().nullable(), spot: z.boolean(), launchedAt: z.string(),
    state: z.enum(['booting', 'idle', 'busy', 'gone', 'terminating', 'stopped']),
  })),
});
export type CloudView = z.infer<typeof CloudViewSchema>;

export const BuilderViewSchema = z.object({
  name: z.string(),
  description: z.string(),
  requires: z.object({
    labels: z.array(z.string()), executor: z.string(),
    os: z.array(z.string()).optional(), arch: z.array(z.string()).optional(), cpus: z.number().optional(),
    trust: z.string().optional(),
  }),
  /** The watched repository, and how watching it goes (last poll, last head seen, error). */
  source: z.object({
    git: z.string(),
    branch: z.string(),
    branches: z.array(z.string()).optional(),
    pollMs: z.number().nullable().optional(),
    lastPolledAt: z.string().nullable().optional(),
    lastSha: z.string().nullable().optional(),
    heads: z.record(z.string(), z.string()).optional(),
    lastPushAt: z.string().nullable().optional(),
    error: z.string().nullable().optional(),
  }).nullable(),
  error: z.string().nullable(),
  runnable: z.boolean(),
  /** When no connected worker (nor latent worker) can run it: why, worker by worker. */
  unrunnable: z.string().nullable().optional(),
});
export type BuilderView = z.infer<typeof BuilderViewSchema>;

export const ArtifactViewSchema = z.object({
  name: z.string(), size: z.number(), sha256: z.string(), worker: z.string().nullable(),
  /** Builds with replicas: whether a majority of workers made the same bytes (only then can it be downloaded). */
  verified: z.boolean().optional(),
});
export type ArtifactView = z.infer<typeof ArtifactViewSchema>;

export const ForceBuildRequestSchema = z.strictObject({
  revision: z.string().min(1).max(200).optional(),
  /** The branch to clone (default: the builder's); the revision must be on it. */
  branch: z.string().min(1).max(250).regex(/^[^\s~^:\\[*?]+$/, 'is not a branch name').refine((b) => !b.startsWith('-'), 'must not start with "-"').optional(),
  reason: z.string().max(500).optional(),
});

/** Frames on `GET /api/v1/events` (WebSocket, master -> dashboard). */
export const DashboardEventSchema = z.discriminatedUnion('type', [
  z.object({ type: z.literal('build'), build: BuildViewSchema }),
  z.object({ type: z.literal('worker'), worker: WorkerViewSchema }),
  z.object({ type: z.literal('builders'), builders: z.array(BuilderViewSchema) }),
  z.object({ type: z.literal('log'), buildId: z.number(), data: z.string() }),
]);
export type DashboardEvent = z.infer<typeof DashboardEventSchema>;

// [crowd] — invitations, volunteers, trust, credit (master/enrollment/routes.ts).

/** `POST /api/v1/invites` body (admin). */
export const InviteCreateRequestSchema = z.strictObject({
  labels: z.array(z.string().min(1).max(100)).max(100).default([]),
  maxBuilds: z.number().int().min(1).max(256).default(4),
  /** How many workers may join with it. */
  uses: z.number().int().min(1).max(1_000_000).default(1),
  /** Milliseconds from now until it expires; absent: never. */
  expiresInMs: z.number().int().positive().optional(),
  note: z.string().max(500).default(''),
});
export type InviteCreateRequest = z.infer<typeof InviteCreateRequestSchema>;

export const InviteViewSchema = z.object({
  id: z.string(),
  labels: z.array(z.string()),
  maxBuilds: z.number(),
  maxUses: z.number(),
  usesLeft: z.number(),
  expiresAt: z.string().nullable(),
  note: z.string(),
  createdAt: z.string(),
  revokedAt: z.string().nullable(),
  /** active, used-up, expired or revoked. */
  state: z.enum(['active', 'used-up', 'expired', 'revoked']),
});
export type InviteView = z.infer<typeof InviteViewSchema>;

/** `POST /api/v1/invites` answer (201): the link is shown only here, once. */
export const InviteCreatedSchema = InviteViewSchema.extend({ link: z.string(), code: z.string() });
export type InviteCreated = z.infer<typeof InviteCreatedSchema>;

export const TrustSchema = z.enum(['new', 'trusted', 'banned']);

export const CreditCountsSchema = z.object({
  builds: z.number(),
  /** Always 0 for now: workers do not report CPU time; wallMs is the time given. */
  cpuMs: z.number(),
  wallMs: z.number(),
  agreed: z.number(),
  disagreed: z.number(),
});
export type CreditCountsView = z.infer<typeof CreditCountsSchema>;

/**
 * What anything public says of a volunteer who asked not to be listed (provenance bundles and
 * the build page's provenance table; the Contributors page leaves them out and counts their work
 * in the farm's totals): this label, never their name or id.
 */
export const UNLISTED_VOLUNTEER_LABEL = 'an unlisted volunteer';
/** The volunteer `id` that stands for an unlisted volunteer in public views. */
export const UNLISTED_VOLUNTEER_ID = 'unlisted';

/** One entry of `GET /api/v1/volunteers`. Unlisted volunteers appear only to the admin. */
export const VolunteerViewSchema = z.object({
  id: z.string(),
  displayName: z.string(),
  trust: TrustSchema,
  credit: CreditCountsSchema,
  /** Admin only from here on. */
  listed: z.boolean().optional(),
  trustSource: z.enum(['join', 'maintainer', 'earned']).optional(),
  streak: z.number().optional(),
  createdAt: z.string().optional(),
  workers: z.array(z.object({ name: z.string(), revoked: z.boolean(), credit: CreditCountsSchema })).optional(),
  trustEvents: z.array(z.object({ trust: TrustSchema, previous: TrustSchema.nullable(), source: z.string(), reason: z.string(), at: z.string() })).optional(),
});
export type VolunteerView = z.infer<typeof VolunteerViewSchema>;

/** `POST /api/v1/volunteers/ID/trust` body (admin). */
export const TrustChangeRequestSchema = z.strictObject({
  trust: TrustSchema,
  reason: z.string().trim().min(1).max(500).default('set by the maintainer'),
});

/** `GET /api/v1/volunteers/ID/credit` and `GET /api/v1/credit`: the last 90 days, oldest first. */
export const CreditDaySchema = CreditCountsSchema.extend({ day: z.string() });
export type CreditDayView = z.infer<typeof CreditDaySchema>;

/** `GET /api/v1/enrollment`: how this farm lets people join, and its earned-trust rules. */
export const EnrollmentViewSchema = z.object({
  mode: z.enum(['invite', 'open', 'closed']),
  farm: z.string(),
  /** Agreeing replicated results in a row that promote a new volunteer; 0: never. */
  promoteAfter: z.number(),
  /** Agreeing replicated results in a row after which a volunteer's builds need fewer replicas (down to each builder's verify.minReplicas); 0: never. */
  fewerReplicasAfter: z.number().default(0),
  /** The farm's public join link, while `mode` is open. */
  link: z.string().optional(),
});
export type EnrollmentView = z.infer<typeof EnrollmentViewSchema>;

/** `GET /api/v1/capacity`: 168 buckets, 0 = Sunday 00:00 UTC. */
export const CapacityBucketSchema = z.object({ hourOfWeek: z.number(), samples: z.number(), average: z.number(), max: z.number() });
export type CapacityBucketView = z.infer<typeof CapacityBucketSchema>;
