import { closeSync, existsSync, fsyncSync, mkdirSync, openSync, readFileSync, renameSync, writeSync } from 'node:fs';
import { dirname } from 'node:path';
import * as z from 'zod';
import { describeIssues } from '../../protocol/parse.js';

/**
 * What one builder has seen of one repository. `heads` is what the master has acted on
 * (decided to build, or recorded without building); `durable` is what `DATA/sources.json`
 * holds: a head gets there only once its build row is committed, so a crash in between
 * builds it again rather than missing it. `entries` are the `branches:` the heads were
 * recorded under; null until a poll has recorded every watched branch (the baseline).
 */
export interface SeenRecord {
  entries: string[] | null;
  heads: Map<string, string>;
  durable: Map<string, string>;
}

const FileSchema = z.object({
  version: z.literal(1),
  builders: z.record(z.string(), z.record(z.string(), z.object({
    branches: z.array(z.string()).nullable(),
    heads: z.record(z.string(), z.string()),
  }))),
});

/** `DATA/sources.json`: the last seen sha per (builder, repository, branch), written atomically. */
export class SourcesFile {
  private readonly records = new Map<string, Map<string, SeenRecord>>();

  constructor(readonly path: string, private readonly log: (line: string) => void = () => undefined) {}

  /** Reads the file; a missing file is an empty state, a broken one is set aside (as `.bad`) and reported. */
  load(): void {
    this.records.clear();
    if (!existsSync(this.path)) return;
    let problem: string;
    try {
      const r = FileSchema.safeParse(JSON.parse(readFileSync(this.path, 'utf8')));
      if (r.success) {
        for (const [builder, repos] of Object.entries(r.data.builders)) {
          for (const [repo, rec] of Object.entries(repos)) {
            const heads = new Map(Object.entries(rec.heads));
            this.repos(builder).set(repo, { entries: rec.branches, heads, durable: new Map(heads) });
          }
        }
        return;
      }
      problem = describeIssues(r.error);
    } catch (e) {
      problem = (e as Error).message;
    }
    renameSync(this.path, `${this.path}.bad`);
    this.log(`${this.path} is unreadable (${problem}); moved it to ${this.path}.bad and starting afresh (branches are recorded again, without building)`);
  }

  get(builder: string, repo: string): SeenRecord | undefined {
    return this.records.get(builder)?.get(repo);
  }

  /** The record, created empty when there is none. */
  record(builder: string, repo: string): SeenRecord {
    const repos = this.repos(builder);
    let rec = repos.get(repo);
    if (!rec) repos.set(repo, rec = { entries: null, heads: new Map(), durable: new Map() });
    return rec;
  }

  /** Writes the durable state: to a temp file, fsync, rename over the old one. */
  save(): void {
    const builders: Record<string, Record<string, { branches: string[] | null; heads: Record<string, string> }>> = {};
    for (const [builder, repos] of this.records) {
      builders[builder] = Object.fromEntries([...repos].map(([repo, r]) => [repo, { branches: r.entries, heads: Object.fromEntries(r.durable) }]));
    }
    const text = `${JSON.stringify({ version: 1, builders }, null, 2)}\n`;
    mkdirSync(dirname(this.path), { recursive: true });
    const tmp = `${this.path}.${process.pid}.tmp`;
    const fd = openSync(tmp, 'w', 0o644);
    try {
      writeSync(fd, text);
      fsyncSync(fd);
    } finally {
      closeSync(fd);
    }
    renameSync(tmp, this.path);
  }

  private repos(builder: string): Map<string, SeenRecord> {
    let repos = this.records.get(builder);
    if (!repos) this.records.set(builder, repos = new Map());
    return repos;
  }
}
