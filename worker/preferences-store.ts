import { join } from 'node:path';
import { PreferencesSchema } from '../protocol/control-api.js';
import { JsonSettingsFile } from './json-settings-file.js';

/**
 * The volunteer's preferences in DATA/preferences.json, written atomically. A broken file is
 * not silently replaced: it is kept aside as preferences.json.broken and the error reported
 * (`problem`; json-settings-file.ts).
 */
export class PreferencesStore extends JsonSettingsFile<typeof PreferencesSchema> {
  constructor(dataDir: string) {
    super(join(dataDir, 'preferences.json'), PreferencesSchema);
  }
}
