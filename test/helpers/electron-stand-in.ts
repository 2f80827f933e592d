/**
 * A STAND-IN for the electron module, for tests only: the Electron binary cannot be
 * downloaded on the machines these tests run on. It implements the part app/desktop.ts uses
 * (app/electron-like.ts) as plain objects that record what the app did — windows and the URL
 * each loaded, the tray's icon, tooltip and menu, IPC handlers, the registered URL scheme,
 * login items, notifications — and lets a test fire the events Electron would (a second
 * instance, open-url, a tray menu click, quit). Nothing here draws anything.
 */
import { EventEmitter } from 'node:events';
import type { Menu, NativeImage } from 'electron';
import type { BrowserWindowLike, ElectronLike, MenuItemLike, TrayLike } from '../../app/electron-like.js';

type Handler = (event: { senderFrame?: { url: string } | null }, ...args: unknown[]) => unknown;

export class StandInWindow extends EventEmitter implements BrowserWindowLike {
  url: string | null = null;
  visible = false;
  windowOpenHandler: ((d: { url: string }) => { action: 'deny' }) | null = null;
  readonly navigation = new EventEmitter();
  constructor(readonly options: Record<string, unknown>) { super(); }
  async loadURL(url: string): Promise<void> { this.url = url; this.emit('ready-to-show'); }
  show(): void { this.visible = true; }
  hide(): void { this.visible = false; }
  focus(): void { /* nothing to focus */ }
  isMinimized(): boolean { return false; }
  restore(): void { /* never minimized */ }
  webContents = {
    setWindowOpenHandler: (f: (d: { url: string }) => { action: 'deny' }) => { this.windowOpenHandler = f; },
    on: (event: 'will-navigate', f: (e: { preventDefault(): void }, url: string) => void) => this.navigation.on(event, f),
  };
  /** Whether the window would navigate to `url` (its will-navigate handler did not prevent it). */
  navigates(url: string): boolean {
    let prevented = false;
    this.navigation.emit('will-navigate', { preventDefault: () => { prevented = true; } }, url);
    return !prevented;
  }
  /** The user closes the window: true when it really closed (not just hidden). */
  close(): boolean {
    let prevented = false;
    this.emit('close', { preventDefault: () => { prevented = true; } });
    if (!prevented) this.emit('closed');
    return !prevented;
  }
}

export class StandInTray extends EventEmitter implements TrayLike {
  image = '';
  tooltip = '';
  menu: MenuItemLike[] = [];
  setImage(image: NativeImage): void { this.image = (image as unknown as { path: string }).path; }
  setToolTip(text: string): void { this.tooltip = text; }
  setContextMenu(menu: Menu | null): void { this.menu = (menu as unknown as { items: MenuItemLike[] } | null)?.items ?? []; }
  /** Clicks the menu item labelled `label` (throws when there is none, or it is disabled). */
  click(label: string): void {
    const item = this.menu.find((i) => i.label === label);
    if (!item) throw new Error(`no tray menu item "${label}" (have: ${this.menu.map((i) => i.label).filter(Boolean).join(', ')})`);
    if (item.enabled === false) throw new Error(`tray menu item "${label}" is disabled`);
    item.click?.();
  }
}

export class ElectronStandIn implements ElectronLike {
  readonly windows: StandInWindow[] = [];
  trays: StandInTray[] = [];
  readonly handlers = new Map<string, Handler>();
  readonly protocolClients: { scheme: string; path?: string; args?: string[] }[] = [];
  readonly protocolHandlers = new Map<string, (r: Request) => Response | Promise<Response>>();
  readonly notifications: { title: string; body: string }[] = [];
  readonly opened: string[] = [];
  loginItem = { openAtLogin: false };
  quitted = false;
  exitCode: number | null = null;
  dialogAnswer: string | null = null;
  private readonly appEvents = new EventEmitter();

  constructor(private readonly userData: string, private readonly singleInstance = true) {}

  app = {
    isPackaged: false,
    requestSingleInstanceLock: () => this.singleInstance,
    quit: () => {
      let prevented = false;
      this.appEvents.emit('before-quit', { preventDefault: () => { prevented = true; } });
      if (!prevented) this.quitted = true;
    },
    exit: (code?: number) => { this.exitCode = code ?? 0; },
    whenReady: () => Promise.resolve(),
    getVersion: () => '0.1.0',
    getPath: (_name: 'userData') => this.userData,
    setAsDefaultProtocolClient: (scheme: string, path?: string, args?: string[]) => { this.protocolClients.push({ scheme, ...(path ? { path } : {}), ...(args ? { args } : {}) }); return true; },
    getLoginItemSettings: () => ({ ...this.loginItem }),
    setLoginItemSettings: (s: { openAtLogin: boolean }) => { this.loginItem = { openAtLogin: s.openAtLogin }; },
    on: (event: string, f: (...a: never[]) => void) => this.appEvents.on(event, f as (...a: unknown[]) => void),
  } as ElectronLike['app'];

  /** Fires an app event as Electron would ('second-instance' with an argv, 'open-url' with a URL). */
  emitApp(event: 'second-instance' | 'open-url', arg: string[] | string): void {
    if (event === 'second-instance') this.appEvents.emit(event, {}, arg);
    else this.appEvents.emit(event, { preventDefault: () => undefined }, arg);
  }

  BrowserWindow = ((self: ElectronStandIn) => class extends StandInWindow {
    constructor(options: object) { super(options as Record<string, unknown>); self.windows.push(this); }
  })(this);

  Tray = ((self: ElectronStandIn) => class extends StandInTray {
    constructor(image: NativeImage) { super(); this.setImage(image); self.trays.push(this); }
  })(this);

  Menu = { buildFromTemplate: (items: MenuItemLike[]) => ({ items }) as unknown as Menu };
  nativeImage = { createFromPath: (path: string) => ({ path }) as unknown as NativeImage };
  ipcMain = { handle: (channel: string, f: Handler) => { this.handlers.set(channel, f); } };
  shell = { openExternal: async (url: string) => { this.opened.push(url); } };
  dialog = { showOpenDialog: async () => ({ canceled: this.dialogAnswer === null, filePaths: this.dialogAnswer ? [this.dialogAnswer] : [] }) };
  session = { defaultSession: { setPermissionRequestHandler: () => undefined } };
  powerMonitor = { getSystemIdleTime: () => 0, getSystemIdleState: () => 'active' as const, isOnBatteryPower: () => false, on: () => undefined };
  Notification = ((self: ElectronStandIn) => class {
    static isSupported(): boolean { return true; }
    constructor(private readonly o: { title: string; body: string }) {}
    show(): void { self.notifications.push(this.o); }
  })(this);
  protocol = {
    registerSchemesAsPrivileged: () => undefined,
    handle: (scheme: string, f: (r: Request) => Response | Promise<Response>) => { this.protocolHandlers.set(scheme, f); },
  };

  /** Invokes the app's IPC as the preload would, from a frame at `from` (default: the first window's page). */
  async invoke(channel: string, arg?: unknown, from?: string): Promise<{ ok: boolean; value?: unknown; error?: string }> {
    const h = this.handlers.get('crowdbake:invoke');
    if (!h) throw new Error('the app registered no IPC handler');
    return (await h({ senderFrame: { url: from ?? this.windows[0]?.url ?? '' } }, channel, arg)) as { ok: boolean; value?: unknown; error?: string };
  }

  get tray(): StandInTray {
    const t = this.trays[0];
    if (!t) throw new Error('the app made no tray');
    return t;
  }
}
