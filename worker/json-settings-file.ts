import { existsSync, mkdirSync, readFileSync, renameSync, writeFileSync } from 'node:fs';
import { dirname } from 'node:path';
import type * as z from 'zod';
import { describeIssues } from '../protocol/parse.js';

/**
 * A small settings file (the volunteer's preferences, the desktop app's settings): JSON checked
 * by its schema on every read and write, written atomically (a temporary file renamed over it)
 * with mode 0600. A file that is not JSON or does not fit the schema is not silently replaced:
 * it is kept aside as FILE.broken, the defaults are used, and `problem` says what was wrong.
 */
export class JsonSettingsFile<S extends z.ZodType<object>> {
  private current: z.output<S>;
  readonly problem: string | null = null;

  constructor(readonly file: string, private readonly schema: S) {
    this.current = schema.parse({});
    if (!existsSync(file)) return;
    let raw: unknown;
    try {
      raw = JSON.parse(readFileSync(file, 'utf8'));
    } catch (e) {
      this.problem = `${file} is not JSON (${(e as Error).message})`;
    }
    const parsed = this.problem === null ? schema.safeParse(raw) : null;
    if (parsed?.success) { this.current = parsed.data; return; }
    renameSync(file, `${file}.broken`);
    this.problem = `${this.problem ?? `${file}: ${describeIssues(parsed!.error)}`}; kept it as ${file}.broken and started from defaults`;
  }

  get(): z.output<S> {
    return this.current;
  }

  update(change: Partial<z.output<S>>): z.output<S> {
    const next = this.schema.parse({ ...this.current, ...change });
    mkdirSync(dirname(this.file), { recursive: true });
    const tmp = `${this.file}.tmp`;
    writeFileSync(tmp, `${JSON.stringify(next, null, 2)}\n`, { mode: 0o600 });
    renameSync(tmp, this.file);
    this.current = next;
    return next;
  }
}
