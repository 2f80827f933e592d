import { existsSync, readFileSync, renameSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { PreferencesSchema, type Preferences } from '../protocol/control-api.js';
import { describeIssues } from '../protocol/parse.js';

/**
 * The volunteer's preferences in DATA/preferences.json, written atomically. A broken file is
 * not silently replaced: it is kept aside as preferences.json.broken and the error reported.
 */
export class PreferencesStore {
  readonly file: string;
  private current: Preferences;
  readonly problem: string | null = null;

  constructor(dataDir: string) {
    this.file = join(dataDir, 'preferences.json');
    if (!existsSync(this.file)) {
      this.current = PreferencesSchema.parse({});
      return;
    }
    const text = readFileSync(this.file, 'utf8');
    let raw: unknown;
    try {
      raw = JSON.parse(text);
    } catch (e) {
      raw = Symbol('broken');
      this.problem = `${this.file} is not JSON (${(e as Error).message})`;
    }
    const parsed = PreferencesSchema.safeParse(raw);
    if (parsed.success) {
      this.current = parsed.data;
    } else {
      this.problem ??= `${this.file}: ${describeIssues(parsed.error)}`;
      renameSync(this.file, `${this.file}.broken`);
      this.problem += `; kept it as ${this.file}.broken and started from defaults`;
      this.current = PreferencesSchema.parse({});
    }
  }

  get(): Preferences {
    return this.current;
  }

  update(change: Partial<Preferences>): Preferences {
    const next = PreferencesSchema.parse({ ...this.current, ...change });
    const tmp = `${this.file}.tmp`;
    writeFileSync(tmp, `${JSON.stringify(next, null, 2)}\n`, { mode: 0o600 });
    renameSync(tmp, this.file);
    this.current = next;
    return next;
  }
}
