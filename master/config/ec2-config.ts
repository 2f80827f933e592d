import { z } from 'zod';
import { DurationSchema, ExecutorKindSchema, NameSchema } from '../../protocol/build-spec.js';

/** Keys that would put AWS credentials in crowdbake.yml: refused, naming the SDK's standard chain instead. */
export const CREDENTIAL_KEYS = ['accessKeyId', 'secretAccessKey', 'sessionToken', 'credentials', 'aws_access_key_id', 'aws_secret_access_key', 'profile'] as const;
const noCredentials = z.unknown().refine(() => false, {
  error: 'AWS credentials never go in crowdbake.yml: the ec2 provisioner takes them from the AWS SDK\'s standard chain '
    + '(AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY or AWS_PROFILE in the master\'s environment, ~/.aws/credentials, SSO, or the instance role of the master\'s own machine)',
}).optional();

const Hours = z.number().positive().max(1_000_000);

/**
 * [cloud] Cloud workers on EC2 (or an EC2-compatible API, `endpoint`): a pool of instances
 * the master starts when queued builds waited `burstAfter` with no volunteer able to take
 * them (at once for `cloud: preferred` builders), within `min`/`max` and the budget. Each
 * instance's user-data installs Crowdbake and runs one `crowdbake worker --when always` with a
 * one-time credential (one connection, one build). Every instance is tagged with the farm's id.
 */
export const Ec2ProvisionerConfigSchema = z.strictObject({
  name: NameSchema,
  type: z.literal('ec2'),
  labels: z.array(z.string().min(1)).default([]),
  executors: z.array(ExecutorKindSchema).min(1).default(['container']),
  region: z.string().regex(/^[a-z0-9-]{2,40}$/, 'must be a region name like eu-west-1'),
  /** An EC2-compatible API instead of AWS's (http(s)://HOST[:PORT]). */
  endpoint: z.url({ protocol: /^https?$/ }).optional(),
  ami: z.string().regex(/^ami-[0-9a-zA-Z]+$/, 'must be an image id like ami-0123456789abcdef0').optional(),
  launchTemplate: z.strictObject({
    id: z.string().min(1).optional(),
    name: z.string().min(1).optional(),
    version: z.string().min(1).optional(),
  }).refine((t) => (t.id === undefined) !== (t.name === undefined), 'give the launch template\'s id or its name').optional(),
  /** Tried in order: capacity or support errors fall through to the next. */
  instanceTypes: z.array(z.string().regex(/^[a-z0-9-]+\.[a-z0-9-]+$/, 'must be an instance type like t3.large')).min(1).optional(),
  subnet: z.string().min(1).optional(),
  securityGroups: z.array(z.string().min(1)).default([]),
  /** Spot instances first; `onDemandFallback` (default true) launches on-demand when spot is unavailable. */
  spot: z.boolean().default(false),
  onDemandFallback: z.boolean().default(true),
  /** Instances kept up even with an empty queue, and the most at once. */
  min: z.number().int().min(0).max(1000).default(0),
  max: z.number().int().min(1).max(1000).default(1),
  /**
   * Stopped on-demand instances kept for reuse (they start faster than new ones and cost only
   * their disks): a done instance is stopped instead of terminated while fewer are kept, and a
   * new worker starts one of them (new user-data, new one-time credential) before launching.
   */
  warmPool: z.number().int().min(0).max(1000).default(0),
  /** How long a queued build waits for a volunteer before a cloud worker starts for it. */
  burstAfter: DurationSchema.default(600_000),
  /** An instance whose worker has had no build this long is terminated (down to `min`). */
  idleTimeout: DurationSchema.default(300_000),
  /** How long a new instance may take to boot and connect; the reaper spares instances younger than this. */
  bootGrace: DurationSchema.default(600_000),
  /** How often the reaper lists the farm's instances (a leaked one is marked, and terminated on the next sweep). */
  reapEvery: DurationSchema.refine((ms) => ms >= 100, 'must be at least 100ms').default(60_000),
  /** How long an instance's one-time credential stays good unused. */
  credentialTtl: DurationSchema.refine((ms) => ms >= 1000, 'must be at least 1s').default(900_000),
  budget: z.strictObject({
    maxInstances: z.number().int().min(1).max(1000).optional(),
    hoursPerDay: Hours.optional(),
    hoursPerMonth: Hours.optional(),
  }).default(() => ({})),
  /** How the user-data installs Crowdbake on a stock image: `npm install -g PACKAGE`, or a script of your own. */
  install: z.strictObject({
    package: z.string().min(1).max(500).regex(/^[^\s'"`$\\;&|<>]+$/, 'must be an npm package spec (name@version, a tarball URL, git+https://…) without spaces or shell characters').default('crowdbake'),
    script: z.string().min(1).max(16_384).optional(),
  }).default(() => ({ package: 'crowdbake' })),
  /** The master's URL as instances reach it; default the farm's `url:`, else where the master listens. */
  masterUrl: z.url({ protocol: /^(https?|wss?)$/ }).optional(),
  /** The instance metadata service the worker polls for spot interruption notices. */
  metadataUrl: z.url({ protocol: /^https?$/ }).default('http://169.254.169.254'),
  /** More tags on every instance. */
  tags: z.record(z.string().min(1).max(128), z.string().max(256)).default(() => ({})),
  ...Object.fromEntries(CREDENTIAL_KEYS.map((k) => [k, noCredentials])) as Record<(typeof CREDENTIAL_KEYS)[number], typeof noCredentials>,
}).refine((c) => c.ami !== undefined || c.launchTemplate !== undefined, 'give an ami or a launchTemplate')
  .refine((c) => c.launchTemplate !== undefined || c.instanceTypes !== undefined, 'instanceTypes: required with an ami (a launch template may name its own)')
  .refine((c) => c.min <= c.max, 'min must not be more than max');
export type Ec2ProvisionerConfig = z.output<typeof Ec2ProvisionerConfigSchema>;
