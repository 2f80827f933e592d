import * as z from 'zod';
import { DurationSchema, SizeSchema } from './build-spec.js';
import { BuildResultSchema } from './worker-messages.js';

/**
 * The worker agent's local control API (loopback HTTP, bearer secret from DATA/control.json):
 * what `crowdbake status|pause|resume|limits` and the desktop app use.
 */

const HHMM = z.string().regex(/^([01]\d|2[0-3]):[0-5]\d$/, 'must be HH:MM (24-hour)');

/** A daily window, local time; start > end wraps midnight, start = end is the whole day. */
export const TimeWindowSchema = z.strictObject({ start: HHMM, end: HHMM });
export type TimeWindow = z.infer<typeof TimeWindowSchema>;

/** Weekdays as `Date.getDay()` numbers them, 0 = Sunday. */
export const WEEKDAYS = ['sun', 'mon', 'tue', 'wed', 'thu', 'fri', 'sat'] as const;
export type Weekday = (typeof WEEKDAYS)[number];
/** The order weekdays are shown in: Monday first. */
export const WEEK_ORDER: readonly Weekday[] = ['mon', 'tue', 'wed', 'thu', 'fri', 'sat', 'sun'];

/**
 * A schedule per weekday: the windows in which builds may run on that day (an empty list: not
 * that day; a day left out: any time that day). A window that wraps midnight belongs to the
 * day it starts on.
 */
export const WeekScheduleSchema = z.strictObject(Object.fromEntries(WEEKDAYS.map((d) => [d, z.array(TimeWindowSchema).max(8).optional()])) as Record<Weekday, z.ZodOptional<z.ZodArray<typeof TimeWindowSchema>>>);
export type WeekSchedule = z.infer<typeof WeekScheduleSchema>;

/** What builds may use while the volunteer is at the computer: `freeze` them, or keep going `gently` within a CPU cap. */
export const WhileHereSchema = z.enum(['freeze', 'gently']);

/** The CPU cap of "keep going gently": at most `cpus` cores and/or `cpuPercent` % of all CPUs (the tighter wins). */
export const GentleLimitsSchema = z.strictObject({
  cpus: z.number().positive().max(1024).nullable().default(1),
  cpuPercent: z.number().min(1).max(100).nullable().default(null),
});
export type GentleLimits = z.infer<typeof GentleLimitsSchema>;

/** The volunteer's preferences, persisted in DATA/preferences.json. Durations in ms, sizes in bytes. */
export const PreferencesSchema = z.strictObject({
  /** Build only while the desktop is idle, or whenever work is assigned. */
  when: z.enum(['idle', 'always']).default('idle'),
  /** How long without input before builds may start (and thaw). */
  idleAfterMs: z.number().int().nonnegative().default(180_000),
  /** Only inside this daily window (local time); null = any time. start > end wraps midnight. */
  schedule: TimeWindowSchema.nullable().default(null),
  /** A schedule per weekday; when set it replaces `schedule`. */
  weekSchedule: WeekScheduleSchema.nullable().default(null),
  /** While the volunteer uses the computer: freeze builds (default), or keep them going within `hereLimits`. */
  whileHere: WhileHereSchema.default('freeze'),
  /** The CPU cap while the volunteer is here and `whileHere` is `gently`. */
  hereLimits: GentleLimitsSchema.default({ cpus: 1, cpuPercent: null }),
  /** Other programs' CPU use must stay above `maxOtherCpuPercent` this long before it holds builds (a short spike does not). */
  otherCpuGraceMs: z.number().int().nonnegative().max(86_400_000).default(30_000),
  /** Above this temperature (°C, hottest /sys/class/thermal zone) builds are throttled to `hereLimits`; 5 °C above it, held. Null: no cap. */
  maxTemperatureC: z.number().min(30).max(110).nullable().default(null),
  /** "Finish the current build, then pause": no new builds; once none runs, `paused` is set. Survives a restart. */
  pauseAfterCurrent: z.boolean().default(false),
  /** Start paused after a restart of the agent (the volunteer resumes by hand). */
  startPaused: z.boolean().default(false),
  /** Run while on battery power. */
  onBattery: z.boolean().default(false),
  /** Do not start builds while other programs use more than this % of all CPUs (null = ignore). */
  maxOtherCpuPercent: z.number().min(1).max(100).nullable().default(null),
  /** Caps for builds while the volunteer is away (the desktop is idle); `hereLimits` while here. */
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
  schedule: TimeWindowSchema.nullable().optional(),
  weekSchedule: WeekScheduleSchema.nullable().optional(),
  whileHere: WhileHereSchema.optional(),
  hereCpus: z.number().positive().max(1024).nullable().optional(),
  hereCpuPercent: z.number().min(1).max(100).nullable().optional(),
  otherCpuGrace: DurationSchema.optional(),
  maxTemperatureC: z.number().min(30).max(110).nullable().optional(),
  pauseAfterCurrent: z.boolean().optional(),
  startPaused: z.boolean().optional(),
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
  /** The CPU cap (cores) builds run under now ("keep going gently", temperature), or null: uncapped or frozen. */
  cpuCap: z.number().nullable().optional(),
  /** The hottest thermal zone's temperature, °C (null: none readable). */
  temperatureC: z.number().nullable().optional(),
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
  /** CPU time the build's sandboxes used (their cgroup's counter), ms; null where it could not be read (host, VM builds). */
  cpuMs: z.number().nullable().optional(),
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

/**
 * `POST /drain` here, and `POST /api/v1/workers/{name}/drain` on a master (api.ts re-exports
 * it): leave after the running builds, or (`now`) give them back at once. It lives here so that
 * the agent does not load the master's REST schemas for it.
 */
export const DrainRequestSchema = z.strictObject({ now: z.boolean().default(false) });
