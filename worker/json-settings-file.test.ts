import { test } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { AppSettingsSchema } from '../protocol/app-ipc.js';
import { PreferencesSchema } from '../protocol/control-api.js';
import { JsonSettingsFile } from './json-settings-file.js';
import { PreferencesStore } from './preferences-store.js';

// The one settings-file code both the volunteer's preferences and the app's settings (app/app-settings.ts) use.

test('a settings file: defaults when absent; written 0600 and read back; one that is not JSON or breaks the schema is kept aside, named in problem', (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'crowdbake-settings-'));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  const prefs = new PreferencesStore(dir);
  assert.equal(prefs.problem, null);
  assert.deepEqual(prefs.get(), PreferencesSchema.parse({}));
  prefs.update({ cpus: 2 });
  assert.equal(statSync(prefs.file).mode & 0o777, 0o600);
  assert.equal(new PreferencesStore(dir).get().cpus, 2);
  assert.throws(() => prefs.update({ cpus: -1 } as never), /cpus/);
  assert.equal(new PreferencesStore(dir).get().cpus, 2, 'a refused change wrote nothing');

  writeFileSync(prefs.file, '{not json');
  const broken = new PreferencesStore(dir);
  assert.match(broken.problem ?? '', /preferences\.json is not JSON \(.*\); kept it as .*preferences\.json\.broken and started from defaults/);
  assert.equal(readFileSync(`${prefs.file}.broken`, 'utf8'), '{not json');
  assert.equal(existsSync(prefs.file), false);
  assert.deepEqual(broken.get(), PreferencesSchema.parse({}));

  // The app's settings, in a directory that does not exist yet, and a file that breaks the schema.
  const appDir = join(dir, 'userData');
  const app = new JsonSettingsFile(join(appDir, 'settings.json'), AppSettingsSchema);
  assert.equal(app.update({ notifications: true }).notifications, true);
  writeFileSync(app.file, JSON.stringify({ notifications: 'loud' }));
  const bad = new JsonSettingsFile(join(appDir, 'settings.json'), AppSettingsSchema);
  assert.match(bad.problem ?? '', /settings\.json: notifications: .*; kept it as .*settings\.json\.broken and started from defaults/);
  assert.equal(bad.get().notifications, false);
});
