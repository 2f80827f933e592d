import { ArtifactsConfigSchema, type S3ArtifactsConfig } from './s3-config.js';
import { readFileSync } from 'node:fs';
import { isIP } from 'node:net';
import { join } from 'node:path';
import { z } from 'zod';
import { DurationSchema, ExecutorKindSchema, NameSchema, SizeSchema } from '../../protocol/build-spec.js';
import { checkSchema, displayPath, readYaml } from './yaml-source.js';
import { DEFAULT_BUILD_CAPS, type BuildCaps } from '../worker-bounds.js';
import { Ec2ProvisionerConfigSchema } from './ec2-config.js';

const latentCommon = {
  name: NameSchema,
  /** What the worker it starts offers, so the master knows which builds it can serve. */
  labels: z.array(z.string().min(1)).default([]),
  idleTimeout: DurationSchema.default(300_000),
  startTimeout: DurationSchema.default(600_000),
};

/**
 * A latent worker: the master starts it (by running the maintainer's `start` command) when
 * queued work needs it and no connected worker can take it, and stops it (`stop`) after it
 * has been idle for `idleTimeout`. `name` is also the worker's name.
 */
export const CommandProvisionerConfigSchema = z.strictObject({
  ...latentCommon,
  type: z.literal('command'),
  start: z.string().min(1),
  stop: z.string().min(1),
  executors: z.array(ExecutorKindSchema).min(1).default(['container']),
});

const AbsolutePath = z.string().min(2).refine((p) => p.startsWith('/') && !p.split('/').includes('..'), 'must be an absolute path without ".."');

/**
 * A latent worker in a qemu VM on the master's own host: the guest mounts the host's system
 * directories and this Crowdbake read-only (9p), runs `crowdbake worker` with the host's node,
 * and reaches the master through QEMU's user network. Its builds run on the guest's host
 * executor: the VM is their sandbox.
 */
export const LocalVmProvisionerConfigSchema = z.strictObject({
  ...latentCommon,
  type: z.literal('local-vm'),
  executors: z.array(z.literal('host')).min(1).default(['host']),
  memory: SizeSchema.default(2 * 1024 ** 3),
  cpus: z.number().int().min(1).max(64).default(2),
  /** kvm, tcg (emulation, slow) or auto: kvm when /dev/kvm works. */
  accel: z.enum(['auto', 'kvm', 'tcg']).default('auto'),
  /** More host directories the guest sees read-only at the same path (e.g. /etc/ssl, a toolchain in /opt). */
  share: z.array(AbsolutePath).default([]),
  /** A guest kernel and initramfs of your own; default: built from Debian's linux-image-amd64 on first use. */
  kernel: AbsolutePath.optional(),
  initrd: AbsolutePath.optional(),
}).refine((c) => (c.kernel === undefined) === (c.initrd === undefined), 'give both kernel and initrd, or neither');

export const ProvisionerConfigSchema = z.discriminatedUnion('type', [CommandProvisionerConfigSchema, LocalVmProvisionerConfigSchema, Ec2ProvisionerConfigSchema]);
export type ProvisionerConfig = z.output<typeof ProvisionerConfigSchema>;
export type CommandProvisionerConfig = z.output<typeof CommandProvisionerConfigSchema>;
export type LocalVmProvisionerConfig = z.output<typeof LocalVmProvisionerConfigSchema>;

/** `HOST:PORT`, `[IPv6]:PORT`; port 0 asks the OS for a free one. */
const LISTEN = /^(?:\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9](?:[A-Za-z0-9.-]*[A-Za-z0-9])?):(\d{1,5})$/;

const LimitsConfigShape = {
  logSize: SizeSchema.default(DEFAULT_BUILD_CAPS.logBytes),
  artifactCount: z.number().int().min(0).max(100_000).default(DEFAULT_BUILD_CAPS.artifactCount),
  artifactsSize: SizeSchema.default(DEFAULT_BUILD_CAPS.artifactBytes),
  uploadStall: DurationSchema.refine((ms) => ms > 0, 'must be more than 0').default(DEFAULT_BUILD_CAPS.uploadStallMs),
  defaultTime: DurationSchema.refine((ms) => ms > 0, 'must be more than 0').default(DEFAULT_BUILD_CAPS.defaultTimeMs),
  timeGrace: DurationSchema.default(DEFAULT_BUILD_CAPS.timeGraceMs),
  frozenTime: DurationSchema.default(DEFAULT_BUILD_CAPS.frozenTimeMs),
};
const BuildCapsConfigSchema = z.strictObject(LimitsConfigShape).default(() => z.strictObject(LimitsConfigShape).parse({}));

export const MasterConfigSchema = z.strictObject({
  listen: z.string().refine((s) => {
    const m = LISTEN.exec(s);
    return m !== null && Number(m[1]) <= 65535;
  }, { error: (iss) => `expected HOST:PORT like 127.0.0.1:8080 or [::1]:8080, got ${JSON.stringify(iss.input)}` }).optional(),
  maxAttempts: z.number().int().min(1).default(3),
  title: z.string().min(1).max(200).optional(),
  /** How long logs and artifacts of finished builds are kept; absent: forever. */
  retention: z.strictObject({ logs: DurationSchema.optional(), artifacts: DurationSchema.optional() }).default(() => ({})),
  /** Largest artifact the master accepts. */
  maxArtifactSize: SizeSchema.default(1024 ** 3),
  /** Where artifacts are kept: local disk (default), or `s3: {bucket, …}` shared by every master. */
  artifacts: ArtifactsConfigSchema,
  provisioners: z.array(ProvisionerConfigSchema).default([]).refine(
    (ps) => new Set(ps.map((p) => p.name)).size === ps.length, 'provisioner names must be unique'),
  /** What one build may put on the master, whatever its worker says (master/worker-bounds.ts). */
  limits: BuildCapsConfigSchema,
  /** [crowd] The farm's display name, in join links and `crowdbake projects`; absent: `title`, else "crowdbake". */
  name: z.string().trim().min(1).max(100).optional(),
  /** [crowd] The master's public URL, as volunteers reach it, for join links; absent: the address it listens on. */
  url: z.url({ protocol: /^https?$/ }).optional(),
  /** [crowd] Who may join: with an invite (default), anyone (`open`, as new volunteers, rate-limited per address), nobody. */
  enrollment: z.strictObject({
    mode: z.enum(['invite', 'open', 'closed']).default('invite'),
    /** Joins per hour from one address under `open` (and tries of unknown codes under any mode). */
    joinsPerHour: z.number().int().min(1).max(100_000).default(10),
  }).default(() => ({ mode: 'invite' as const, joinsPerHour: 10 })),
  /**
   * [crowd] Earned trust: agreeing replicated results in a row that promote a new volunteer
   * (0: never), and that let a volunteer's builds run with fewer replicas, down to the
   * builder's `verify.minReplicas` (0: never, the default).
   */
  trust: z.strictObject({
    promoteAfter: z.number().int().min(0).max(100_000).default(10),
    fewerReplicasAfter: z.number().int().min(0).max(100_000).default(0),
  }).default(() => ({ promoteAfter: 10, fewerReplicasAfter: 0 })),
  /** [http] false: every read (REST GETs, events, logs, artifacts) needs the admin token. */
  public: z.boolean().default(true),
  /** [http] Reverse proxies (IP or CIDR) whose X-Forwarded-For is believed, for the client address. */
  trustedProxies: z.array(z.string().refine((s) => isIpOrCidr(s), 'must be an IP address or CIDR like 10.0.0.0/8')).default([]),
  /** [http] Dashboards streaming /api/v1/events at a time: overall, and from one address. */
  eventSubscribers: z.strictObject({
    max: z.number().int().min(1).max(1_000_000).default(1000),
    perAddress: z.number().int().min(1).max(1_000_000).default(20),
    /** A dashboard more than 1 MiB behind for this long is disconnected. */
    stuckAfter: DurationSchema.refine((ms) => ms > 0, 'must be more than 0').default(60_000),
  }).default(() => ({ max: 1000, perAddress: 20, stuckAfter: 60_000 })),
});

function isIpOrCidr(s: string): boolean {
  const [ip, bits, extra] = s.split('/');
  if (extra !== undefined || !ip || isIP(ip) === 0) return false;
  return bits === undefined || (/^\d{1,3}$/.test(bits) && Number(bits) <= (isIP(ip) === 4 ? 32 : 128));
}

export interface MasterConfig {
  /** HOST:PORT; absent: the master's default address. */
  listen?: string;
  /** How many times a build is tried before it is marked failed. Default 3. */
  maxAttempts: number;
  /** Shown on the dashboard; absent: the default title. */
  title?: string;
  /** Latent workers the master starts and stops on demand. */
  provisioners: ProvisionerConfig[];
  retention: { logsMs: number | null; artifactsMs: number | null };
  maxArtifactBytes: number;
  /** `artifacts.s3`: artifacts in an S3-compatible bucket; absent: local disk. */
  s3?: S3ArtifactsConfig;
  /** Per-build caps and master-side time limits (`limits:`). */
  limits: BuildCaps;
  /** The farm's display name (`name:`, else `title:`, else "crowdbake"). */
  farmName: string;
  /** The public URL for join links (`url:`); absent: the listening address. */
  url?: string;
  enrollment: { mode: 'invite' | 'open' | 'closed'; joinsPerHour: number };
  trust: { promoteAfter: number; fewerReplicasAfter: number };
  /** [http] false: reads need the admin token too. */
  public: boolean;
  trustedProxies: string[];
  eventSubscribers: { max: number; perAddress: number; stuckAfter: number };
}

export type MasterConfigResult = { ok: true; config: MasterConfig } | { ok: false; errors: string[] };

/** A master config that cannot be used; `errors` has one `FILE:LINE:COL: key: message` per problem. */
export class ConfigError extends Error {
  constructor(readonly errors: string[]) {
    super(errors.join('\n'));
    this.name = 'ConfigError';
  }
}

const FILES = ['crowdbake.yml', 'crowdbake.yaml'];

/**
 * Reads the optional `CONFIG/crowdbake.yml` (or `.yaml`). A missing or empty file means the
 * defaults. Throws ConfigError when the file is broken: the master should not start on a guess.
 */
export function loadMasterConfig(configDir: string): MasterConfig {
  const r = readMasterConfig(configDir);
  if (!r.ok) throw new ConfigError(r.errors);
  return r.config;
}

/** Like loadMasterConfig, but never throws. */
export function readMasterConfig(configDir: string): MasterConfigResult {
  const found: { path: string; text: string }[] = [];
  for (const name of FILES) {
    const path = join(configDir, name);
    try {
      found.push({ path, text: readFileSync(path, 'utf8') });
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code !== 'ENOENT') return { ok: false, errors: [`${name}: cannot read: ${(e as Error).message}`] };
    }
  }
  const first = found[0];
  if (first === undefined) return { ok: true, config: defaults() };
  if (found.length > 1) return { ok: false, errors: [`${FILES.join(' and ')} both exist; keep one`] };
  return parseMasterConfig(first.path, first.text, { configDir });
}

/** Parses the text of a master config file; messages name the file, line and key. */
export function parseMasterConfig(path: string, text: string, options: { configDir?: string } = {}): MasterConfigResult {
  const read = readYaml(displayPath(path, options.configDir), text);
  if (!read.ok) return read;
  if (read.empty) return { ok: true, config: defaults() };
  const checked = checkSchema(read.source, read.data, MasterConfigSchema);
  return checked.ok ? { ok: true, config: normalize(checked.value) } : checked;
}

function defaults(): MasterConfig {
  return normalize(MasterConfigSchema.parse({}));
}

function normalize(v: z.output<typeof MasterConfigSchema>): MasterConfig {
  return {
    maxAttempts: v.maxAttempts,
    provisioners: v.provisioners,
    retention: { logsMs: v.retention.logs ?? null, artifactsMs: v.retention.artifacts ?? null },
    maxArtifactBytes: v.maxArtifactSize,
    ...(v.artifacts.s3 ? { s3: { bucket: v.artifacts.s3.bucket, prefix: v.artifacts.s3.prefix, region: v.artifacts.s3.region, forcePathStyle: v.artifacts.s3.forcePathStyle, ...(v.artifacts.s3.endpoint ? { endpoint: v.artifacts.s3.endpoint } : {}) } } : {}),
    limits: {
      logBytes: v.limits.logSize, artifactCount: v.limits.artifactCount, artifactBytes: v.limits.artifactsSize,
      uploadStallMs: v.limits.uploadStall, defaultTimeMs: v.limits.defaultTime, timeGraceMs: v.limits.timeGrace,
      frozenTimeMs: v.limits.frozenTime,
    },
    farmName: v.name ?? v.title ?? 'crowdbake',
    enrollment: v.enrollment,
    trust: v.trust,
    public: v.public, trustedProxies: v.trustedProxies, eventSubscribers: v.eventSubscribers,
    ...(v.url !== undefined ? { url: v.url.replace(/\/+$/, '') } : {}),
    ...(v.listen !== undefined ? { listen: v.listen } : {}),
    ...(v.title !== undefined ? { title: v.title } : {}),
  };
}
