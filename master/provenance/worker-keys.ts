import { existsSync, mkdirSync, readFileSync, renameSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import * as z from 'zod';
import { describeIssues } from '../../protocol/parse.js';
import type { Store } from '../store/store.js';

const RetiredSchema = z.array(z.strictObject({
  worker: z.string(), key: z.string(), retiredAt: z.string(), why: z.enum(['rotated', 'revoked']),
}));
export type RetiredKey = z.infer<typeof RetiredSchema>[number];

/**
 * [provenance] Worker keys that are no longer enrolled, and since when: DATA/provenance/
 * retired-keys.json (next to the statements they signed). A key is retired when its worker
 * rotates to a new one or the maintainer revokes it; statements it signs afterwards are
 * refused (the token holds another key, or none), while those the master accepted before
 * stay checkable: each bundle names the retirement time, and `crowdbake verify` accepts a
 * statement only if the farm accepted it before then.
 */
export class WorkerKeys {
  private readonly file: string;

  constructor(private readonly store: Store, dataDir: string) {
    const dir = join(dataDir, 'provenance');
    mkdirSync(dir, { recursive: true });
    this.file = join(dir, 'retired-keys.json');
  }

  list(): RetiredKey[] {
    if (!existsSync(this.file)) return [];
    const r = RetiredSchema.safeParse(JSON.parse(readFileSync(this.file, 'utf8')));
    if (!r.success) throw new Error(`${this.file} is damaged: ${describeIssues(r.error)}`);
    return r.data;
  }

  /** When `key` of `worker` was retired, or null while it is (or never was) enrolled. */
  retired(worker: string, key: string): RetiredKey | null {
    return this.list().find((k) => k.worker === worker && k.key === key) ?? null;
  }

  /**
   * Enrolls `newKey` for the worker (null: none) and retires its current key, in that order:
   * from the moment the store changes the old key's statements are refused.
   */
  async replace(worker: string, newKey: string | null, why: RetiredKey['why']): Promise<RetiredKey | null> {
    const token = await this.store.getToken(worker);
    if (!token || token.revokedAt) throw new Error(`no active token named "${worker}"`);
    const old = token.workerKey ?? null;
    if (newKey !== null && this.list().some((k) => k.key === newKey)) throw new Error('that key was enrolled before and retired; make a new one');
    if (!(await this.store.setWorkerKey(worker, newKey))) throw new Error(`no active token named "${worker}"`);
    if (!old) return null;
    const entry: RetiredKey = { worker, key: old, retiredAt: new Date().toISOString(), why };
    const all = [...this.list().filter((k) => !(k.worker === worker && k.key === old)), entry];
    writeFileSync(`${this.file}.tmp`, `${JSON.stringify(all, null, 1)}\n`);
    renameSync(`${this.file}.tmp`, this.file);
    return entry;
  }
}
