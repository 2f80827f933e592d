import * as z from 'zod';
import { BaseSchema } from './base-ref.js';
import {
  DurationSchema, ExecutorRequirementSchema, NameSchema, SizeSchema, SourceUrlSchema, type BuildSpec, type Limits,
} from './build-spec.js';

/**
 * A builder file, `CONFIG/builders/NAME.yml`, as the maintainer writes it. Unknown keys are
 * errors. `toBuilderDefinition` turns it into the normalized form the master keeps.
 */
const StepFileSchema = z.strictObject({
  name: z.string().min(1).max(100).optional(),
  run: z.union([z.string().min(1), z.array(z.string()).min(1)]),
  timeout: DurationSchema.optional(),
  env: z.record(z.string(), z.union([z.string(), z.number(), z.boolean()]).transform(String)).optional(),
});

/** Branch names, and in `branches:` patterns: `*` and `?` match within one `/`-separated part, `**` across parts. */
const BranchSchema = z.string().min(1).max(250)
  .regex(/^[^\s~^:\\[]+$/, 'is not a branch name (no spaces, ~, ^, :, \\ or [)')
  .refine((b) => !b.startsWith('-') && !b.startsWith('refs/'), 'give the branch name without "refs/heads/" and not starting with "-"');
const isPattern = (b: string): boolean => /[*?]/.test(b);

/**
 * `branch: main` watches one branch; `branches: [main, release-*]` watches several. Workers
 * clone `branch` (default: the first entry of `branches` without wildcards, else main) and
 * then check out the build's exact revision.
 */
const SourceFileSchema = z.strictObject({
  git: SourceUrlSchema,
  branch: BranchSchema.refine((b) => !isPattern(b), 'must be a plain branch name; put patterns under "branches:"').optional(),
  branches: z.array(BranchSchema).min(1).optional(),
  poll: DurationSchema.optional(),
}).superRefine((s, ctx) => {
  if (s.branch === undefined && s.branches?.length && !s.branches.some((b) => !isPattern(b))) {
    ctx.addIssue({ code: 'custom', path: ['branches'], message: 'list at least one branch without * or ? (workers clone it before checking out the revision), or add "branch:"' });
  }
});

/** `linux` or `[linux, freebsd]`: Node's platform names; macos and windows are accepted for darwin and win32. */
const OsSchema = oneOrMany('os', normalizeOs, () => KNOWN_OS);
/** `x64` or `[x64, arm64]`: Node's arch names; amd64, x86_64 and aarch64 are accepted for x64 and arm64. */
const ArchSchema = oneOrMany('arch', normalizeArch, () => KNOWN_ARCH);

export const BuilderFileSchema = z.strictObject({
  description: z.string().default(''),
  source: SourceFileSchema.optional(),
  requires: z.strictObject({
    labels: z.array(z.string().min(1)).default([]),
    executor: ExecutorRequirementSchema.default('any'),
    /** The worker's operating system must be one of these. */
    os: OsSchema.optional(),
    /** The worker's CPU architecture must be one of these. */
    arch: ArchSchema.optional(),
    /** The worker must offer at least this many CPUs. */
    cpus: z.number().int().positive().max(1024).optional(),
    /** `trusted`: its builds (their specs and env) go only to workers of trusted volunteers or the maintainer's tokens. */
    trust: z.enum(['any', 'trusted']).default('any'),
  }).default(() => ({ labels: [], executor: 'any' as const, trust: 'any' as const })),
  /**
   * When a newer commit of the same branch is queued while an older one still waits, the
   * older one is superseded instead of run (BuildBot's collapseRequests). Forced builds and
   * rebuilds are never collapsed.
   */
  collapse: z.boolean().default(true),
  environment: z.strictObject({
    /** Checked by protocol/base-ref.ts: never a path on the worker. */
    base: BaseSchema.default('busybox'),
    setup: z.array(z.string()).default([]),
  }).default(() => ({ base: 'busybox', setup: [] })),
  network: z.boolean().default(false),
  /**
   * Cloud workers (an `ec2` provisioner): `fallback` (default) starts one only after a queued
   * build waited the provisioner's `burstAfter` with no volunteer able to take it; `preferred`
   * starts one at once; `never` keeps the builder's builds off the cloud.
   */
  cloud: z.enum(['fallback', 'preferred', 'never']).default('fallback'),
  /** Higher goes first when workers are scarce (default 0); equal priorities share workers fairly. */
  priority: z.number().int().min(-100).max(100).default(0),
  steps: z.array(StepFileSchema).min(1, 'a builder needs at least one step'),
  artifacts: z.array(z.string().min(1)).default([]),
  /** Install and test the artifacts in a second, fresh environment (default: the same base, no setup). */
  'test-install': z.strictObject({
    environment: z.strictObject({
      base: BaseSchema.optional(),
      setup: z.array(z.string()).default([]),
    }).optional(),
    steps: z.array(StepFileSchema).min(1, 'test-install needs at least one step'),
  }).optional(),
  /** Run each build on this many different workers; its artifacts count only when a majority agree on their sha256. */
  verify: z.strictObject({
    replicas: z.number().int().min(2, 'replicas must be at least 2 (one build on two different workers)').max(7),
    /** `distinct`: no two replicas on workers of the same volunteer; `any` (default): only on different workers. */
    owners: z.enum(['any', 'distinct']).default('any'),
    /**
     * [crowd] Earned trust: the fewest replicas a build may run with when its first replica
     * lands on a volunteer whose last `trust.fewerReplicasAfter` replicated results agreed
     * (crowdbake.yml); default `replicas` (never fewer).
     */
    minReplicas: z.number().int().min(1).max(7).optional(),
  }).refine((v) => v.minReplicas === undefined || v.minReplicas <= v.replicas, { message: 'minReplicas must not be more than replicas', path: ['minReplicas'] }).optional(),
  /** [provenance] `required`: a successful attempt counts only with a statement signed by the worker's enrolled key. */
  provenance: z.enum(['optional', 'required']).default('optional'),
  limits: z.strictObject({
    time: DurationSchema.optional(),
    cpus: z.number().positive().optional(),
    memory: SizeSchema.optional(),
    disk: SizeSchema.optional(),
    pids: z.number().int().positive().optional(),
    frozen: DurationSchema.optional(),
  }).default(() => ({})),
});
export type BuilderFile = z.infer<typeof BuilderFileSchema>;

/** A builder as the master keeps and serves it. */
export interface BuilderDefinition {
  name: string;
  description: string;
  /** `branch` is the one workers clone; `branches` (present only when the file says `branches:`) are the watched names and patterns. */
  source: { git: string; branch: string; branches?: string[]; pollMs: number | null } | null;
  requires: { labels: string[]; executor: BuildSpec['executor']; os?: string[]; arch?: string[]; cpus?: number; trust?: 'trusted' };
  priority: number;
  /** Whether a newer commit of a branch supersedes a queued, older one. */
  collapse: boolean;
  /** When its queued builds may start a cloud worker (`cloud:`); absent means `fallback`. */
  cloud?: 'preferred' | 'never';
  /** Present when the builder asks for replicated builds (`verify: { replicas }`). */
  verify?: { replicas: number; owners?: 'distinct'; minReplicas?: number };
  /** Present when the builder says `provenance: required` (unsigned attempts are refused). */
  provenance?: 'required';
  spec: Omit<BuildSpec, 'revision'>;
}

/** Node's names for operating systems (process.platform) and CPU architectures (process.arch). */
export const KNOWN_OS = ['linux', 'darwin', 'win32', 'freebsd', 'openbsd', 'netbsd', 'sunos', 'aix'];
export const KNOWN_ARCH = ['x64', 'arm64', 'ia32', 'arm', 'riscv64', 'ppc64', 's390x', 'loong64', 'mips', 'mipsel'];
const OS_ALIASES: Record<string, string> = { macos: 'darwin', mac: 'darwin', osx: 'darwin', windows: 'win32', win: 'win32' };
const ARCH_ALIASES: Record<string, string> = { amd64: 'x64', x86_64: 'x64', aarch64: 'arm64', i386: 'ia32', i686: 'ia32', x86: 'ia32', armhf: 'arm' };

/** A worker's reported platform (Node's, or systeminformation's "Windows") in the names builder files use. */
export function normalizeOs(v: string): string {
  const s = v.trim().toLowerCase();
  return OS_ALIASES[s] ?? s;
}

export function normalizeArch(v: string): string {
  const s = v.trim().toLowerCase();
  return ARCH_ALIASES[s] ?? s;
}

function oneOrMany(what: string, normalize: (v: string) => string, known: () => string[]) {
  return z.union([z.string().min(1), z.array(z.string().min(1)).min(1)]).transform((v, ctx) => {
    const out: string[] = [];
    for (const raw of typeof v === 'string' ? [v] : v) {
      const n = normalize(raw);
      if (!known().includes(n)) {
        ctx.addIssue({ code: 'custom', message: `unknown ${what} "${raw}" (one of ${known().join(', ')})`, input: raw });
        return z.NEVER;
      }
      if (!out.includes(n)) out.push(n);
    }
    return out;
  });
}

function toStep(s: z.infer<typeof StepFileSchema>, i: number): BuildSpec['steps'][number] {
  return {
    name: s.name ?? `step-${i + 1}`,
    run: s.run,
    ...(s.timeout !== undefined ? { timeoutMs: s.timeout } : {}),
    env: s.env ?? {},
  };
}

export function toBuilderDefinition(name: string, file: BuilderFile): BuilderDefinition {
  const parsedName = NameSchema.safeParse(name);
  if (!parsedName.success) throw new Error(`builder name "${name}" ${parsedName.error.issues[0]?.message ?? 'is invalid'}`);
  const limits: Limits = {};
  if (file.limits.time !== undefined) limits.timeMs = file.limits.time;
  if (file.limits.cpus !== undefined) limits.cpus = file.limits.cpus;
  if (file.limits.memory !== undefined) limits.memoryBytes = file.limits.memory;
  if (file.limits.disk !== undefined) limits.diskBytes = file.limits.disk;
  if (file.limits.pids !== undefined) limits.pids = file.limits.pids;
  if (file.limits.frozen !== undefined) limits.maxFrozenMs = file.limits.frozen;
  const ti = file['test-install'];
  const source = file.source
    ? {
      git: file.source.git,
      branch: file.source.branch ?? file.source.branches?.find((b) => !isPattern(b)) ?? 'main',
      ...(file.source.branches ? { branches: file.source.branches } : {}),
      pollMs: file.source.poll ?? null,
    }
    : null;
  return {
    name,
    description: file.description,
    source,
    requires: {
      labels: file.requires.labels, executor: file.requires.executor,
      ...(file.requires.os ? { os: file.requires.os } : {}),
      ...(file.requires.arch ? { arch: file.requires.arch } : {}),
      ...(file.requires.cpus !== undefined ? { cpus: file.requires.cpus } : {}),
      ...(file.requires.trust === 'trusted' ? { trust: 'trusted' as const } : {}),
    },
    priority: file.priority,
    collapse: file.collapse,
    ...(file.cloud !== 'fallback' ? { cloud: file.cloud } : {}),
    ...(file.verify ? {
      verify: {
        replicas: file.verify.replicas, ...(file.verify.owners === 'distinct' ? { owners: 'distinct' as const } : {}),
        ...(file.verify.minReplicas !== undefined && file.verify.minReplicas < file.verify.replicas ? { minReplicas: file.verify.minReplicas } : {}),
      },
    } : {}),
    ...(file.provenance === 'required' ? { provenance: 'required' as const } : {}),
    spec: {
      builder: name,
      source: source ? { git: source.git, branch: source.branch } : null,
      executor: file.requires.executor,
      environment: { base: file.environment.base, setup: file.environment.setup },
      steps: file.steps.map(toStep),
      artifacts: file.artifacts,
      limits,
      network: file.network,
      testInstall: ti
        ? { environment: { base: ti.environment?.base ?? file.environment.base, setup: ti.environment?.setup ?? [] }, steps: ti.steps.map(toStep) }
        : null,
    },
  };
}
