import * as z from 'zod';
import { DurationSchema, SizeSchema } from './build-spec.js';
import { BuildResultSchema } from './worker-messages.js';

/**
 * The worker agent's local control API (loopback HTTP, bearer secret from DATA/control.json):
 * what `crowdbake status|pause|resume|limits` and the desktop app use.
 */

const HHMM = z.string().regex(/^([01]\d|2[0-3]):[0-5]\d$/, 'must be HH:MM (24-hour)');

/** The volunteer's preferences, persisted in DATA/preferences.json. Durations in ms, sizes in bytes. */
export const PreferencesSchema = z.strictObject({
  /** Build only while the desktop is idle, or whenever work is assigned. */
  when: z.enum(['idle', 'always']).default('idle'),
  /** How long without input before builds may start (and thaw). */
  idleAfterMs: z.number().int().nonnegative().default(180_000),
  /** Only inside this daily window (local time); null = any time. start > end wraps midnight. */
  schedule: z.strictObject({ start: HHMM, end: HHMM }).nullable().default(null),
  /** Run while on battery power. */
  onBattery: z.boolean().default(false),
  /** Do not start builds while other programs use more than this % of all CPUs (null = ignore). */
  maxOtherCpuPercent: z.number().min(1).max(100).nullable().default(null),
  /** Caps for builds while the desktop is idle. */
  cpus: z.number().positive().nullable().default(null),
  memoryBytes: z.number().int().positive().nullable().default(null),
  diskBytes: z.number().int().positive().nullable().default(null),
  paused: z.boolean().default(false),
  /** ISO time until which builds are snoozed (like paused, ends by itself). */
  snoozeUntil: z.string().datetime().nullable().default(null),
});
export type Preferences = z.infer<typeof PreferencesSchema>;

/** A change to the preferences as a person types it: "5m", "4g". Null clears a cap. */
export const PreferencesPatchSchema = z.strictObject({
  when: z.enum(['idle', 'always']).optional(),
  idleAfter: DurationSchema.optional(),
  schedule: z.strictObject({ start: HHMM, end: HHMM }).nullable().optional(),
  onBattery: z.boolean().optional(),
  maxOtherCpuPercent: z.number().min(1).max(100).nullable().optional(),
  cpus: z.number().positive().nullable().optional(),
  memory: SizeSchema.nullable().optional(),
  disk: SizeSchema.nullable().optional(),
});
export type PreferencesPatch = z.input<typeof PreferencesPatchSchema>;

export const AgentStateSchema = z.enum(['idle', 'busy', 'frozen', 'paused', 'offline']);
export type AgentState = z.infer<typeof AgentStateSchema>;

export const AgentStatusSchema = z.object({
  state: AgentStateSchema,
  /** Whether the agent takes new builds now, and if not, why. */
  accepting: z.boolean(),
  reason: z.string(),
  idleSource: z.object({ name: z.string(), why: z.string() }),
  idleMs: z.number().nullable(),
  master: z.object({ url: z.string(), connected: z.boolean() }),
  name: z.string(),
  executors: z.array(z.string()),
  /** `historyId`: the build's entry in the local history (its log is at /api/v1/history/ID/log). */
  current: z.array(z.object({ buildId: z.number(), builder: z.string(), frozen: z.boolean(), startedAt: z.string(), historyId: z.number().optional() })),
  preferences: PreferencesSchema,
  /** Every project this agent serves ([crowd]: several masters, each with a share). */
  projects: z.array(z.object({
    name: z.string(), master: z.string(), worker: z.string(), share: z.number(), connected: z.boolean(),
    /** Builds of this project running here now. */
    running: z.number(),
    /** Slot-seconds this project has used since the agent started (what the share arithmetic weighs). */
    usedSeconds: z.number(),
    /** Whether this project is offered the next free build slot now. */
    offered: z.boolean(),
  })).optional(),
});
export type AgentStatus = z.infer<typeof AgentStatusSchema>;

export const HistoryEntrySchema = z.object({
  id: z.number(),
  buildId: z.number(),
  attempt: z.number(),
  master: z.string(),
  builder: z.string(),
  revision: z.string().nullable(),
  result: BuildResultSchema.nullable(),
  message: z.string().nullable(),
  startedAt: z.string(),
  finishedAt: z.string().nullable(),
  frozenMs: z.number(),
  /** A local re-run (not reported to any master) repeats this entry; null for builds the master assigned. */
  rerunOf: z.number().nullable(),
  /** The build spec is kept, so it can be run again here. */
  canRerun: z.boolean(),
});
export type HistoryEntry = z.infer<typeof HistoryEntrySchema>;

/** What the desktop app feeds in from Electron's powerMonitor. */
export const IdleReportSchema = z.strictObject({
  idleMs: z.number().nonnegative(),
  locked: z.boolean().default(false),
  onBattery: z.boolean().optional(),
  suspended: z.boolean().default(false),
});
export type IdleReport = z.infer<typeof IdleReportSchema>;

export const SnoozeRequestSchema = z.strictObject({ duration: DurationSchema.default(3_600_000) });
