/**
 * The main process's side of the window's IPC map (protocol/app-ipc.ts): each call's channel
 * and argument are checked against the map's schemas before anything runs, then forwarded to
 * the local agent's control API (AgentClient, with the secret main holds) or to the same code
 * `crowdbake join|projects|leave` runs. Plain Node, no electron: main.ts hands it the sender
 * check and the window's own actions, and the Chromium tests drive it through a test preload.
 */
import { resolve } from 'node:path';
import { IPC_CHANNELS, type AppInfo, type AppSettings, type IpcAnswer, type IpcArg, type IpcChannel, type IpcValue } from '../protocol/app-ipc.js';
import { PreferencesSchema } from '../protocol/control-api.js';
import { parseJoinLink } from '../protocol/join.js';
import { describeIssues } from '../protocol/parse.js';
import { defaultDisplayName, defaultWorkerName, join, joinedAlready } from '../worker/join-project.js';
import { projectRows, removeProject, setShare, type ProjectRow } from '../worker/projects.js';
import { AgentClient } from './agent-client.js';
import type { AppSettingsStore } from './app-settings.js';

export interface IpcRouterDeps {
  /** The worker agent's data directory (its projects, control.json). */
  dataDir: string;
  settings: AppSettingsStore;
  info(): Omit<AppInfo, 'defaults' | 'settings' | 'firstRun'>;
  /** Called after a join (the worker process starts, or picks the project up), a leave, a settings change. */
  projectsChanged(): void;
  settingsChanged(s: AppSettings): void;
  startMaster(): Promise<{ dashboardUrl: string } | null>;
  openDashboard(): boolean;
  openExternal(url: string): Promise<boolean>;
}

/** Each handler gets the parsed argument, and the argument as sent (once it parsed) to forward as typed. */
type Handlers = { [C in IpcChannel]: (arg: IpcValueOfArg<C>, raw: unknown) => Promise<IpcValue<C>> | IpcValue<C> };
type IpcValueOfArg<C extends IpcChannel> = Exclude<ReturnType<(typeof IPC_CHANNELS)[C][0]['parse']>, never>;

export function createIpcRouter(d: IpcRouterDeps): (channel: unknown, arg: unknown) => Promise<IpcAnswer<IpcChannel>> {
  const agent = (): AgentClient => {
    const c = AgentClient.open(d.dataDir);
    if (typeof c === 'string') throw new Error(`the worker agent is not running yet (${c})`);
    return c;
  };
  const rows = async (): Promise<ProjectRow[]> => {
    const c = AgentClient.open(d.dataDir);
    if (typeof c === 'string') return projectRows(d.dataDir, undefined, 'not running');
    try { return projectRows(d.dataDir, (await c.status()).projects, 'running'); } catch { return projectRows(d.dataDir, undefined, 'not running'); }
  };
  const firstRun = () => projectRows(d.dataDir, undefined, 'not running').length === 0 && !d.info().runsMaster;
  const handlers: Handlers = {
    'app:info': () => ({ ...d.info(), firstRun: firstRun(), defaults: PreferencesSchema.parse({}), settings: d.settings.get() }),
    'app:settings': (change) => { const s = d.settings.update(change); d.settingsChanged(s); return s; },
    'app:start-master': () => d.startMaster(),
    'app:open-dashboard': () => d.openDashboard(),
    'app:open-external': (url) => d.openExternal(url),
    'agent:status': async () => {
      const c = AgentClient.open(d.dataDir);
      if (typeof c === 'string') return { offline: c };
      return c.status().catch((e: Error) => ({ offline: e.message }));
    },
    'agent:pause': () => agent().pause(),
    'agent:resume': () => agent().resume(),
    'agent:snooze': (duration) => agent().snooze(duration),
    'agent:finish-then-pause': async () => { const c = agent(); await c.call('PATCH', '/preferences', { pauseAfterCurrent: true }); return c.status(); },
    // Checked against the same schema the agent applies; forwarded as typed ("5m", "4g"), which the agent parses again.
    'agent:preferences': async (_patch, raw) => PreferencesSchema.parse(await agent().call('PATCH', '/preferences', raw)),
    'agent:history': async ({ limit, builder }) => agent().call('GET', `/history?${new URLSearchParams({ limit: String(limit), ...(builder ? { builder } : {}) })}`) as Promise<IpcValue<'agent:history'>>,
    'agent:entry': async (id) => agent().call('GET', `/history/${id}`) as Promise<IpcValue<'agent:entry'>>,
    'agent:log': ({ id, from }) => agent().log(id, from),
    'agent:rerun': async (id) => agent().call('POST', `/history/${id}/rerun`, {}) as Promise<IpcValue<'agent:rerun'>>,
    'projects:list': () => rows(),
    'projects:join': async ({ link: text, displayName, listed }) => {
      // The link is the volunteer's own input; parseJoinLink allows only an http(s) master URL, a code, a pin.
      const link = parseJoinLink(text.trim());
      const already = joinedAlready(d.dataDir, link);
      if (already) throw new Error(already);
      const r = await join(link, { dataDir: resolve(d.dataDir), worker: defaultWorkerName(), displayName: displayName ?? defaultDisplayName(), listed });
      d.projectsChanged();
      return r;
    },
    'projects:leave': async (name) => { removeProject(d.dataDir, name); d.projectsChanged(); return rows(); },
    'projects:share': async ({ name, share }) => { setShare(d.dataDir, name, share); return rows(); },
  };
  return async (channel, arg) => {
    if (typeof channel !== 'string' || !Object.hasOwn(IPC_CHANNELS, channel)) return { ok: false, error: `no IPC channel ${String(channel).slice(0, 60)}` };
    const c = channel as IpcChannel;
    const parsed = IPC_CHANNELS[c][0].safeParse(arg);
    if (!parsed.success) return { ok: false, error: `${c}: ${describeIssues(parsed.error)}` };
    try {
      const value = await (handlers[c] as (a: unknown, raw: unknown) => unknown)(parsed.data, arg);
      return { ok: true, value } as IpcAnswer<IpcChannel>;
    } catch (e) {
      return { ok: false, error: (e as Error).message };
    }
  };
}

export type { IpcArg };
