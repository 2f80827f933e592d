import * as z from 'zod';
import { KNOWN_EXECUTOR_NAMES } from './executor-names.js';
import { redactUrl, sourceUrlProblem } from './source-url.js';
import { parseDuration, parseSize } from './units.js';

/**
 * An executor this version knows (protocol/executor-names.ts), as builder files and the
 * master's config name them; on the wire (a worker's hello) any ExecutorNameSchema passes.
 */
export const ExecutorKindSchema = z.enum(KNOWN_EXECUTOR_NAMES as [string, ...string[]]);
export type ExecutorKind = string;
/** Where a build may run. `any` means any isolated executor (container or vm), never host. */
export const ExecutorRequirementSchema = z.enum([...KNOWN_EXECUTOR_NAMES, 'any'] as unknown as [string, ...string[]]);
export type ExecutorRequirement = string;

/** "30s", "5m", or a number of seconds; parsed to milliseconds. */
export const DurationSchema = z.union([z.string(), z.number()]).transform((v, ctx) => {
  const r = parseDuration(v);
  if (typeof r === 'string') {
    ctx.addIssue({ code: 'custom', message: r, input: v });
    return z.NEVER;
  }
  return r;
});

/** "512m", "4g", or a number of bytes; parsed to bytes. */
export const SizeSchema = z.union([z.string(), z.number()]).transform((v, ctx) => {
  const r = parseSize(v);
  if (typeof r === 'string') {
    ctx.addIssue({ code: 'custom', message: r, input: v });
    return z.NEVER;
  }
  return r;
});

const NAME = /^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$/;
export const NameSchema = z.string().regex(NAME, 'must be 1-64 letters, digits, ".", "_" or "-", starting with a letter or digit');

/** The normalized, wire form of what a worker needs to run a build (numbers, not "5m"). */
export const LimitsSchema = z.strictObject({
  timeMs: z.number().int().positive().optional(),
  cpus: z.number().positive().optional(),
  memoryBytes: z.number().int().positive().optional(),
  diskBytes: z.number().int().positive().optional(),
  pids: z.number().int().positive().optional(),
  /** How long a build may stay frozen (its volunteer back at the desk) before it is requeued elsewhere. */
  maxFrozenMs: z.number().int().positive().optional(),
});
export type Limits = z.infer<typeof LimitsSchema>;

export const StepSpecSchema = z.strictObject({
  name: z.string().min(1).max(100),
  /** A string runs under /bin/sh -c; a list is argv. */
  run: z.union([z.string().min(1), z.array(z.string()).min(1)]),
  timeoutMs: z.number().int().positive().optional(),
  env: z.record(z.string(), z.string()).default({}),
});
export type StepSpec = z.infer<typeof StepSpecSchema>;

export const EnvironmentSpecSchema = z.strictObject({
  /** busybox | debootstrap:SUITE | rootfs:PATH.tar | image:REF | vm:PATH.qcow2 */
  base: z.string().min(1),
  setup: z.array(z.string()).default([]),
});
export type EnvironmentSpec = z.infer<typeof EnvironmentSpecSchema>;

/**
 * A build's source repository: https://, http:// or git:// of a remote host only (see
 * protocol/source-url.ts). The worker clones it on the volunteer's computer, so the same rule
 * holds in the builder file (master) and in every assignment (worker, decodeMasterMessage).
 */
export const SourceUrlSchema = z.string().min(1).superRefine((v, ctx) => {
  const problem = sourceUrlProblem(v);
  if (problem) ctx.addIssue({ code: 'custom', message: problem, input: redactUrl(v) });
});

export const SourceSpecSchema = z.strictObject({
  git: SourceUrlSchema,
  branch: z.string().min(1).default('main'),
});
export type SourceSpec = z.infer<typeof SourceSpecSchema>;

/** A second, fresh environment where the build's artifacts are installed and tested (in /work/artifacts). */
export const TestInstallSpecSchema = z.strictObject({
  environment: EnvironmentSpecSchema,
  steps: z.array(StepSpecSchema).min(1),
});
export type TestInstallSpec = z.infer<typeof TestInstallSpecSchema>;

export const BuildSpecSchema = z.strictObject({
  builder: NameSchema,
  revision: z.string().nullable(),
  source: SourceSpecSchema.nullable(),
  executor: ExecutorRequirementSchema,
  environment: EnvironmentSpecSchema,
  steps: z.array(StepSpecSchema).min(1),
  artifacts: z.array(z.string()).default([]),
  limits: LimitsSchema,
  network: z.boolean(),
  testInstall: TestInstallSpecSchema.nullable().default(null),
});
export type BuildSpec = z.infer<typeof BuildSpecSchema>;

/** Every step of a build in the order it runs: the build's own, then the test-install stage's. */
export function allStepNames(spec: Pick<BuildSpec, 'steps' | 'testInstall'>): string[] {
  return [...spec.steps.map((s) => s.name), ...(spec.testInstall?.steps ?? []).map((s) => `test-install: ${s.name}`)];
}
