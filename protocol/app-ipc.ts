import * as z from 'zod';
import { AgentStatusSchema, HistoryEntrySchema, PreferencesPatchSchema, PreferencesSchema } from './control-api.js';

/**
 * The desktop window ↔ Electron main process: one typed map of IPC channels, schema first.
 * The window (renderer/, sandboxed, no Node) calls `window.crowdbake.invoke(channel, arg)`
 * through the preload; main checks the sender's frame, parses `arg` with the channel's schema
 * and answers `{ ok: true, value }` or `{ ok: false, error }` (a sentence for the window).
 * Main forwards agent channels to the local agent's control API, and project channels to the
 * same code `crowdbake join|projects|leave` runs. No secret ever reaches the window: the
 * agent's bearer secret and the worker tokens stay in main.
 */

export const UpdateNoticeSchema = z.object({
  /** current: nothing to do; available: a newer protocol is spoken by a master; required: a master refuses this version. */
  state: z.enum(['current', 'available', 'required']),
  message: z.string(),
});
export type UpdateNotice = z.infer<typeof UpdateNoticeSchema>;

export const AppSettingsSchema = z.strictObject({
  /** Desktop notifications when something needs the volunteer (off by default). */
  notifications: z.boolean().default(false),
  /** Start the app at login. */
  autostart: z.boolean().default(false),
  /** What quitting does to a running build: requeue it now (the master gives it to another computer) or finish it first. */
  onQuit: z.enum(['requeue', 'finish']).default('requeue'),
  /** A master this app runs (its config directory), started with the app; null: none. */
  masterConfigDir: z.string().min(1).max(4096).nullable().default(null),
});
export type AppSettings = z.infer<typeof AppSettingsSchema>;

export const AppInfoSchema = z.object({
  version: z.string(),
  platform: z.string(),
  /** No project joined and no master run: the window shows the first-run screen. */
  firstRun: z.boolean(),
  /** The dashboard of the master this app runs (or was pointed at), or null. */
  dashboardUrl: z.string().nullable(),
  runsMaster: z.boolean(),
  /** The agent's defaults, shown on the first-run screen before anything starts. */
  defaults: PreferencesSchema,
  settings: AppSettingsSchema,
  update: UpdateNoticeSchema,
  /** A join link the app was opened with (crowdbake:…), waiting for the volunteer to confirm. */
  pendingJoinLink: z.string().nullable(),
});
export type AppInfo = z.infer<typeof AppInfoSchema>;

export const ProjectViewSchema = z.object({
  name: z.string(), farm: z.string(), master: z.string(), worker: z.string(), share: z.number(), joinedAt: z.string(),
  /** connected / connecting / agent not running. */
  state: z.string(),
  running: z.number().optional(),
  usedSeconds: z.number().optional(),
});
export type ProjectView = z.infer<typeof ProjectViewSchema>;

export const JoinRequestArgSchema = z.strictObject({
  link: z.string().min(1).max(4096),
  displayName: z.string().trim().min(1).max(64).optional(),
  listed: z.boolean().default(true),
});

export const JoinResultSchema = z.object({ project: z.string(), worker: z.string(), farm: z.string(), volunteerName: z.string(), trust: z.string(), labels: z.array(z.string()) });

const none = z.undefined();
const id = z.number().int().positive();

/**
 * What the window may change of the settings. Not `masterConfigDir`: the folder of a master
 * this app starts (and so the builder files and scripts it runs) is chosen only in main's
 * native folder dialog (`app:start-master`); a page that names one is refused by name.
 */
export const AppSettingsChangeSchema = AppSettingsSchema.omit({ masterConfigDir: true }).partial().extend({
  masterConfigDir: z.never({ error: 'is set only through the folder dialog of "Run a master" (app:start-master), never by the window' }).optional(),
});

/** channel → [argument schema, result schema]. */
export const IPC_CHANNELS = {
  'app:info': [none, AppInfoSchema],
  'app:settings': [AppSettingsChangeSchema, AppSettingsSchema],
  'app:start-master': [none, z.object({ dashboardUrl: z.string() }).nullable()],
  'app:open-dashboard': [none, z.boolean()],
  'app:open-external': [z.string().max(4096), z.boolean()],
  'agent:status': [none, z.union([AgentStatusSchema, z.object({ offline: z.string() })])],
  'agent:pause': [none, AgentStatusSchema],
  'agent:resume': [none, AgentStatusSchema],
  'agent:snooze': [z.string().max(32), AgentStatusSchema],
  'agent:finish-then-pause': [none, AgentStatusSchema],
  'agent:preferences': [PreferencesPatchSchema, PreferencesSchema],
  'agent:history': [z.strictObject({ limit: z.number().int().min(1).max(1000), builder: z.string().max(200).optional() }), z.array(HistoryEntrySchema)],
  'agent:entry': [id, HistoryEntrySchema],
  'agent:log': [z.strictObject({ id, from: z.number().int().nonnegative() }), z.object({ base64: z.string(), size: z.number() })],
  'agent:rerun': [id, HistoryEntrySchema],
  'projects:list': [none, z.array(ProjectViewSchema)],
  'projects:join': [JoinRequestArgSchema, JoinResultSchema],
  'projects:leave': [z.string().max(64), z.array(ProjectViewSchema)],
  'projects:share': [z.strictObject({ name: z.string().max(64), share: z.number().positive().max(1_000_000) }), z.array(ProjectViewSchema)],
} as const satisfies Record<string, readonly [z.ZodType, z.ZodType]>;

export type IpcChannel = keyof typeof IPC_CHANNELS;
export type IpcArg<C extends IpcChannel> = z.input<(typeof IPC_CHANNELS)[C][0]>;
export type IpcValue<C extends IpcChannel> = z.infer<(typeof IPC_CHANNELS)[C][1]>;
export type IpcAnswer<C extends IpcChannel> = { ok: true; value: IpcValue<C> } | { ok: false; error: string };

/** The one IPC channel the preload uses: every call is `[channel, arg]` on it. */
export const IPC_INVOKE = 'crowdbake:invoke';

/** What the preload exposes as `window.crowdbake`. */
export interface CrowdbakeBridge {
  invoke<C extends IpcChannel>(channel: C, ...arg: IpcArg<C> extends undefined ? [] : [IpcArg<C>]): Promise<IpcAnswer<C>>;
}

/** The name of the global the bridge is exposed as. */
export const BRIDGE_GLOBAL = 'crowdbake';
