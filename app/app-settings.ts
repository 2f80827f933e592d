import { join } from 'node:path';
import { AppSettingsSchema } from '../protocol/app-ipc.js';
import { JsonSettingsFile } from '../worker/json-settings-file.js';

/**
 * The app's own settings (notifications, start at login, what quitting does, the master it
 * runs) in USERDATA/settings.json, written atomically. A damaged file is kept aside as
 * settings.json.broken and the defaults used, with the reason in `problem`
 * (worker/json-settings-file.ts, shared with the volunteer's preferences).
 */
export class AppSettingsStore extends JsonSettingsFile<typeof AppSettingsSchema> {
  constructor(dir: string) {
    super(join(dir, 'settings.json'), AppSettingsSchema);
  }
}
