import { existsSync, mkdirSync, readFileSync, renameSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { AppSettingsSchema, type AppSettings } from '../protocol/app-ipc.js';

/**
 * The app's own settings (notifications, start at login, what quitting does, the master it
 * runs) in USERDATA/settings.json, written atomically. A damaged file is kept aside as
 * settings.json.broken and the defaults used, with the reason in `problem`.
 */
export class AppSettingsStore {
  readonly file: string;
  private current: AppSettings;
  readonly problem: string | null = null;

  constructor(dir: string) {
    this.file = join(dir, 'settings.json');
    this.current = AppSettingsSchema.parse({});
    if (!existsSync(this.file)) return;
    let parsed;
    try { parsed = AppSettingsSchema.safeParse(JSON.parse(readFileSync(this.file, 'utf8'))); } catch (e) {
      parsed = { success: false as const, error: new Error(`not JSON (${(e as Error).message})`) };
    }
    if (parsed.success) { this.current = parsed.data; return; }
    renameSync(this.file, `${this.file}.broken`);
    this.problem = `${this.file} was unusable (${parsed.error.message.split('\n')[0]}); kept it as settings.json.broken and started from defaults`;
  }

  get(): AppSettings {
    return this.current;
  }

  update(change: Partial<AppSettings>): AppSettings {
    const next = AppSettingsSchema.parse({ ...this.current, ...change });
    mkdirSync(dirname(this.file), { recursive: true });
    writeFileSync(`${this.file}.tmp`, `${JSON.stringify(next, null, 2)}\n`, { mode: 0o600 });
    renameSync(`${this.file}.tmp`, this.file);
    this.current = next;
    return next;
  }
}
