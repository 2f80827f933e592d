/**
 * The part of Electron the desktop app uses, as a structural type: app/main.ts passes the
 * real `electron` module, the tests a named stand-in (test/helpers/electron-stand-in.ts — the
 * Electron binary cannot be downloaded on the machines these tests run on). Images and menus
 * are Electron's own types (types only; the stand-in makes opaque values of them).
 */
import type { Menu, NativeImage } from 'electron';

export interface MenuItemLike {
  label?: string;
  type?: 'normal' | 'separator' | 'checkbox';
  enabled?: boolean;
  checked?: boolean;
  click?: () => void;
}

export interface BrowserWindowLike {
  loadURL(url: string): Promise<void>;
  show(): void;
  hide(): void;
  focus(): void;
  isMinimized(): boolean;
  restore(): void;
  on(event: 'close', f: (e: { preventDefault(): void }) => void): unknown;
  on(event: 'closed', f: () => void): unknown;
  once(event: 'ready-to-show', f: () => void): unknown;
  webContents: {
    setWindowOpenHandler(f: (d: { url: string }) => { action: 'deny' }): void;
    on(event: 'will-navigate', f: (e: { preventDefault(): void }, url: string) => void): unknown;
  };
}

export interface TrayLike {
  setImage(image: NativeImage): void;
  setToolTip(text: string): void;
  setContextMenu(menu: Menu | null): void;
  on(event: 'click', f: () => void): unknown;
}

export interface ElectronLike {
  app: {
    isPackaged: boolean;
    requestSingleInstanceLock(): boolean;
    quit(): void;
    exit(code?: number): void;
    whenReady(): Promise<unknown>;
    getVersion(): string;
    getPath(name: 'userData'): string;
    setAsDefaultProtocolClient(scheme: string, path?: string, args?: string[]): boolean;
    getLoginItemSettings(): { openAtLogin: boolean };
    setLoginItemSettings(s: { openAtLogin: boolean; args?: string[] }): void;
    on(event: 'second-instance', f: (e: unknown, argv: string[]) => void): unknown;
    on(event: 'open-url', f: (e: { preventDefault(): void }, url: string) => void): unknown;
    on(event: 'before-quit', f: (e: { preventDefault(): void }) => void): unknown;
    on(event: 'window-all-closed', f: () => void): unknown;
  };
  BrowserWindow: new (options: object) => BrowserWindowLike;
  Tray: new (image: NativeImage) => TrayLike;
  Menu: { buildFromTemplate(items: MenuItemLike[]): Menu };
  nativeImage: { createFromPath(path: string): NativeImage };
  ipcMain: { handle(channel: string, f: (event: { senderFrame?: { url: string } | null }, ...args: unknown[]) => unknown): void };
  shell: { openExternal(url: string): Promise<void> };
  dialog: { showOpenDialog(o: { title: string; properties: 'openDirectory'[] }): Promise<{ canceled: boolean; filePaths: string[] }> };
  session: { defaultSession: { setPermissionRequestHandler(f: (wc: unknown, permission: string, callback: (ok: boolean) => void) => void): void } };
  powerMonitor: {
    getSystemIdleTime(): number;
    getSystemIdleState(thresholdSeconds: number): 'active' | 'idle' | 'locked' | 'unknown';
    isOnBatteryPower(): boolean;
    on(event: string, f: () => void): unknown;
  };
  Notification: { new (o: { title: string; body: string }): { show(): void }; isSupported(): boolean };
  protocol: {
    registerSchemesAsPrivileged(schemes: { scheme: string; privileges: { standard?: boolean; secure?: boolean; supportFetchAPI?: boolean } }[]): void;
    handle(scheme: string, f: (request: Request) => Response | Promise<Response>): void;
  };
}
