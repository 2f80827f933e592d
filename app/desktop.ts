/**
 * The desktop app's wiring, given the electron module (main.ts passes the real one, tests a
 * named stand-in). The window shows the volunteer's own pages (renderer/src/agent, served
 * from the app's files on the crowdbake-app: scheme) and talks to main only through the
 * preload's one IPC map (protocol/app-ipc.ts → ipc-router.ts); the worker runs as its own
 * process (worker-supervisor.ts); the tray follows the agent's control API.
 */
import { statfsSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { IPC_INVOKE, type AppSettings, type UpdateNotice } from '../protocol/app-ipc.js';
import type { AgentStatus } from '../protocol/control-api.js';
import { listProjects } from '../worker/projects.js';
import { AgentClient, applyTrayAction } from './agent-client.js';
import { APP_PAGE, APP_SCHEME, appPageResponse, isAppPageUrl } from './app-page.js';
import { AppSettingsStore } from './app-settings.js';
import { attentionItems, fetchVersionInfo, updateNotice } from './attention.js';
import type { BrowserWindowLike, ElectronLike, MenuItemLike, TrayLike } from './electron-like.js';
import { appIdleSource, IDLE_REPORT_EVERY_MS, idleReport } from './idle-report.js';
import { createIpcRouter } from './ipc-router.js';
import { URL_SCHEME, joinLinkInArgv } from './join-links.js';
import { dashboardUrl, parseAgentLaunch, parseLaunch, workerArgs, workerEnv } from './launch-options.js';
import { startMasterProcess, type MasterProcess } from './master-process.js';
import { trayPresentation, trayStateOfAgent, type TrayAction } from './tray-state.js';
import { dashboardWindowOptions, isDashboardUrl, isExternalUrl, secureWebPreferences } from './window-options.js';
import { WorkerSupervisor } from './worker-supervisor.js';

export interface DesktopOptions {
  /** The app's arguments (after Electron's own). */
  argv: string[];
  env: NodeJS.ProcessEnv;
  /** Runs the CLI: Electron's binary with ELECTRON_RUN_AS_NODE=1 (node in tests). */
  execPath: string;
  cli: string;
  rendererDir: string;
  preload: string;
  trayIcons: string;
  appIcon: string;
  /** The worker agent's data directory (default: XDG_DATA_HOME/crowdbake/worker). */
  workerDataDir?: string;
  restartDelayMs?: number;
  /** Unpackaged: the Electron binary and main.js, registered for crowdbake: links. */
  electronPath?: string;
  appEntry?: string;
  /** How often the tray looks at the agent (default 1 s). */
  pollMs?: number;
  log?: (line: string) => void;
}

export interface DesktopHandle {
  /** Resolves once started (the window shown). */
  ready: Promise<void>;
  worker: () => WorkerSupervisor;
  window: () => BrowserWindowLike | null;
  trayState: () => string;
  attention: () => string[];
  dashboardUrl: () => string | null;
  onTrayAction(action: TrayAction): Promise<void>;
}

export function startDesktop(e: ElectronLike, o: DesktopOptions): DesktopHandle {
  const log = o.log ?? ((l: string) => console.error(`crowdbake app: ${l}`));
  e.protocol.registerSchemesAsPrivileged([{ scheme: APP_SCHEME, privileges: { standard: true, secure: true, supportFetchAPI: true } }]);
  const launch = parseLaunch(o.argv, o.env);
  const agentLaunch = parseAgentLaunch(o.argv, o.env);
  const explicitMaster = launch.mode === 'connect' && (o.argv.some((a) => a === '--master' || a.startsWith('--master=')) || o.env.CROWDBAKE_MASTER !== undefined);
  const dataDir = resolve(agentLaunch.dataDir ?? o.workerDataDir ?? join(o.env.XDG_DATA_HOME ?? join(o.env.HOME ?? '.', '.local', 'share'), 'crowdbake', 'worker'));
  let win: BrowserWindowLike | null = null;
  let dashboardWin: BrowserWindowLike | null = null;
  let tray: TrayLike | null = null;
  let settings!: AppSettingsStore;
  let master: MasterProcess | null = null;
  let dashboard: string | null = explicitMaster && launch.mode === 'connect' ? dashboardUrl(launch.masterUrl) : null;
  let pendingJoinLink = joinLinkInArgv(o.argv);
  let status: AgentStatus | null = null;
  let attention: string[] = [];
  let update: UpdateNotice = { state: 'current', message: 'not checked yet' };
  let quitting = false;
  let stopped = false;
  let suspended = false;

  const supervisor = new WorkerSupervisor({
    execPath: o.execPath, dataDir, log, ...(o.restartDelayMs !== undefined ? { restartDelayMs: o.restartDelayMs } : {}),
    args: () => (agentLaunch.token !== null && launch.mode === 'connect'
      ? workerArgs(o.cli, launch.masterUrl, { ...agentLaunch, token: agentLaunch.token }, dataDir)
      : [o.cli, 'worker', '--data', dataDir, '--idle-source', appIdleSource(process.platform, o.env)]),
    env: () => ({ ...(agentLaunch.token !== null ? workerEnv({ ...agentLaunch, token: agentLaunch.token }, o.env) : o.env), ELECTRON_RUN_AS_NODE: '1' }),
  });
  const hasWork = () => agentLaunch.token !== null || listProjects(dataDir).length > 0;

  const startMaster = async (configDir: string): Promise<string> => {
    master = startMasterProcess({ execPath: o.execPath, cli: o.cli, configDir, dataDir: launch.mode === 'start' ? launch.dataDir : null, listen: launch.mode === 'start' ? launch.listen : '127.0.0.1:8585', env: { ...o.env, ELECTRON_RUN_AS_NODE: '1' } });
    dashboard = dashboardUrl(await master.url);
    renderTray();
    return dashboard;
  };

  const router = () => createIpcRouter({
    dataDir, settings,
    info: () => ({ version: e.app.getVersion(), platform: process.platform, dashboardUrl: dashboard, runsMaster: master !== null, update, pendingJoinLink }),
    projectsChanged: () => { pendingJoinLink = null; if (!supervisor.running && hasWork()) supervisor.start(); },
    settingsChanged: (s) => applySettings(s),
    startMaster: async () => {
      const r = await e.dialog.showOpenDialog({ title: 'Folder with crowdbake.yml and builders/', properties: ['openDirectory'] });
      if (r.canceled || !r.filePaths[0]) return null;
      settings.update({ masterConfigDir: r.filePaths[0] });
      return { dashboardUrl: await startMaster(r.filePaths[0]) };
    },
    openDashboard: () => openDashboard(),
    openExternal: async (url) => { if (!isExternalUrl(url)) return false; await e.shell.openExternal(url); return true; },
  });

  const applySettings = (s: AppSettings) => {
    if (e.app.getLoginItemSettings().openAtLogin !== s.autostart) e.app.setLoginItemSettings({ openAtLogin: s.autostart, args: o.argv.filter((a) => !a.startsWith(URL_SCHEME)) });
    renderTray();
  };

  const showWindow = () => {
    if (win) { if (win.isMinimized()) win.restore(); win.show(); win.focus(); return; }
    const w = new e.BrowserWindow(dashboardWindowOptions({ preload: o.preload, icon: o.appIcon }));
    win = w;
    w.once('ready-to-show', () => w.show());
    w.on('close', (ev) => { if (!quitting) { ev.preventDefault(); w.hide(); } }); // closing keeps the app in the tray
    w.on('closed', () => { win = null; });
    lockNavigation(w, (url) => isAppPageUrl(url));
    void w.loadURL(APP_PAGE);
  };

  /** The master's dashboard, in a window of its own without a preload (it needs none). */
  const openDashboard = (): boolean => {
    if (!dashboard) return false;
    if (dashboardWin) { dashboardWin.show(); dashboardWin.focus(); return true; }
    const url = dashboard;
    const w = new e.BrowserWindow({ ...dashboardWindowOptions({ preload: o.preload, icon: o.appIcon }), webPreferences: { ...secureWebPreferences(o.preload), preload: undefined } });
    dashboardWin = w;
    w.once('ready-to-show', () => w.show());
    w.on('closed', () => { dashboardWin = null; });
    lockNavigation(w, (u) => isDashboardUrl(u, url));
    void w.loadURL(url);
    return true;
  };

  const lockNavigation = (w: BrowserWindowLike, allowed: (url: string) => boolean) => {
    w.webContents.setWindowOpenHandler(({ url }) => { if (isExternalUrl(url)) void e.shell.openExternal(url); return { action: 'deny' }; });
    w.webContents.on('will-navigate', (ev, url) => { if (!allowed(url)) { ev.preventDefault(); if (isExternalUrl(url)) void e.shell.openExternal(url); } });
  };

  const renderTray = () => {
    if (!tray) return;
    const p = trayPresentation(trayStateOfAgent(status, attention), {
      builds: status?.current.map((c) => c.buildId) ?? [], ...(status?.master.url ? { master: status.master.url } : {}),
      autostart: settings.get().autostart, notifications: settings.get().notifications, runsMaster: master !== null,
      attention, pausingAfterCurrent: status?.preferences.pauseAfterCurrent ?? false,
    });
    tray.setImage(e.nativeImage.createFromPath(`${o.trayIcons}${p.icon}`));
    tray.setToolTip(p.tooltip);
    const items: MenuItemLike[] = p.menu.map((item) => {
      switch (item.kind) {
        case 'separator': return { type: 'separator' };
        case 'status': return { label: item.label, enabled: false };
        case 'action': return { label: item.label, enabled: item.enabled, click: () => void onTrayAction(item.action) };
        case 'check': return { label: item.label, type: 'checkbox', checked: item.checked, click: () => void onTrayAction(item.action) };
      }
    });
    tray.setContextMenu(e.Menu.buildFromTemplate(items));
  };

  const onTrayAction = async (action: TrayAction): Promise<void> => {
    switch (action) {
      case 'open-window': showWindow(); return;
      case 'open-dashboard': openDashboard(); return;
      case 'quit': e.app.quit(); return;
      case 'toggle-autostart': applySettings(settings.update({ autostart: !settings.get().autostart })); return;
      case 'toggle-notifications': applySettings(settings.update({ notifications: !settings.get().notifications })); return;
      case 'start-master': await router()('app:start-master', undefined); return;
      case 'pause': case 'resume': case 'snooze': case 'finish-then-pause': {
        const client = AgentClient.open(dataDir);
        if (typeof client === 'string') return;
        try { status = await applyTrayAction(action, client); renderTray(); } catch (err) { log((err as Error).message); }
        return;
      }
    }
  };

  /** The tray follows the agent; what needs the volunteer is worked out here (and notified, if they want). */
  const follow = async () => {
    const client = AgentClient.open(dataDir);
    status = typeof client === 'string' ? null : await client.status().catch(() => null);
    let free: number | null = null;
    try { const s = statfsSync(dataDir); free = s.bavail * s.bsize; } catch { /* not made yet */ }
    const next = attentionItems({ update, freeBytes: free, status, joined: status ? listProjects(dataDir).map((p) => p.name) : [] });
    const fresh = next.filter((a) => !attention.includes(a));
    attention = next;
    if (fresh.length && settings.get().notifications && e.Notification.isSupported()) for (const body of fresh) new e.Notification({ title: 'Crowdbake', body }).show();
    renderTray();
  };
  const checkVersions = async () => {
    const ranges = await Promise.all(listProjects(dataDir).map(async (p) => ({ master: p.master, info: await fetchVersionInfo(p.master) })));
    update = updateNotice(ranges);
  };

  const feedIdle = () => {
    const report = () => {
      const client = AgentClient.open(dataDir);
      if (typeof client === 'string') return;
      const pm = e.powerMonitor;
      void client.reportIdle(idleReport({ idleSeconds: pm.getSystemIdleTime(), idleState: pm.getSystemIdleState(60), onBattery: pm.isOnBatteryPower(), suspended })).catch(() => undefined);
    };
    e.powerMonitor.on('suspend', () => { suspended = true; report(); });
    e.powerMonitor.on('resume', () => { suspended = false; report(); });
    for (const ev of ['lock-screen', 'unlock-screen', 'user-did-become-active', 'on-battery', 'on-ac']) e.powerMonitor.on(ev, report);
    setInterval(report, IDLE_REPORT_EVERY_MS).unref();
  };

  const start = async () => {
    settings = new AppSettingsStore(e.app.getPath('userData'));
    if (settings.problem) log(settings.problem);
    e.protocol.handle(APP_SCHEME, (req) => { const r = appPageResponse(o.rendererDir, req.url); return new Response(new Uint8Array(r.body), { status: r.status, headers: r.headers }); });
    e.session.defaultSession.setPermissionRequestHandler((_wc, _perm, callback) => callback(false));
    const route = router();
    // Only the app's own page is answered; what it sends is checked by the IPC map's schemas (ipc-router.ts).
    e.ipcMain.handle(IPC_INVOKE, (event, channel, arg) => {
      const from = event.senderFrame?.url ?? '';
      if (!isAppPageUrl(from)) return { ok: false, error: `IPC refused for ${from || 'an unknown frame'}` };
      return route(channel, arg);
    });
    if (launch.mode === 'start') await startMaster(launch.configDir);
    else if (settings.get().masterConfigDir) await startMaster(settings.get().masterConfigDir!).catch((err: Error) => log(`the master did not start: ${err.message}`));
    if (hasWork()) supervisor.start();
    tray = new e.Tray(e.nativeImage.createFromPath(`${o.trayIcons}tray-offline.png`));
    tray.on('click', () => showWindow());
    renderTray();
    const poll = setInterval(() => void follow(), o.pollMs ?? 1000);
    poll.unref();
    void checkVersions().then(follow);
    setInterval(() => void checkVersions(), 3_600_000).unref();
    feedIdle();
    showWindow();
  };

  let ready: Promise<void> = Promise.resolve();
  if (!e.app.requestSingleInstanceLock()) {
    e.app.quit();
  } else {
    // Unpackaged (`electron dist/app/main.js`), the link must start Electron with the app's entry script.
    if (e.app.isPackaged || !o.appEntry) e.app.setAsDefaultProtocolClient(URL_SCHEME);
    else e.app.setAsDefaultProtocolClient(URL_SCHEME, o.electronPath ?? o.execPath, [o.appEntry]);
    // A crowdbake: link opened while the app runs (Linux, Windows: a second instance's argv; macOS: open-url).
    e.app.on('second-instance', (_ev, argv) => { pendingJoinLink = joinLinkInArgv(argv) ?? pendingJoinLink; showWindow(); });
    e.app.on('open-url', (ev, url) => { ev.preventDefault(); pendingJoinLink = joinLinkInArgv([url]); showWindow(); });
    e.app.on('window-all-closed', () => { /* stays in the tray */ });
    e.app.on('before-quit', (ev) => {
      quitting = true;
      if (stopped) return;
      ev.preventDefault();
      // Quitting stops the worker as the volunteer chose (requeue now, or finish first), then the master.
      void supervisor.stop(settings?.get().onQuit ?? 'requeue').then(() => master?.stop()).finally(() => { stopped = true; e.app.quit(); });
    });
    ready = e.app.whenReady().then(start);
    ready.catch((err: Error) => { log(err.message); e.app.exit(1); });
  }

  return {
    ready,
    worker: () => supervisor,
    window: () => win,
    trayState: () => trayStateOfAgent(status, attention),
    attention: () => attention,
    dashboardUrl: () => dashboard,
    onTrayAction,
  };
}
