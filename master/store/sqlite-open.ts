import Database from 'better-sqlite3';

/** journal_size_limit of the master's databases: past 64 MiB a checkpointed WAL file is cut back. */
export const WAL_SIZE_LIMIT = 64 * 1024 * 1024;

/**
 * Opens one of the master's SQLite databases (the store, `crowdbake.db`, and the log database,
 * `logs/logs.db`) with the settings both want: WAL, so that readers (the dashboard, log
 * downloads) never wait for the writer; `synchronous = NORMAL`, so a commit survives a crash of
 * the master and only a power cut may lose the last ones; a 5 s busy timeout for the moment
 * another connection (a CLI command such as `crowdbake token revoke`) writes; and a WAL file cut
 * back to WAL_SIZE_LIMIT after a checkpoint, where it would otherwise stay at its largest (a long
 * read can hold checkpoints off). A file that cannot be opened throws with `what` and the cause.
 */
export function openSqlite(file: string, what: string): Database.Database {
  let db: Database.Database | undefined;
  try {
    db = new Database(file);
    db.pragma('journal_mode = WAL');
    db.pragma('synchronous = NORMAL');
    db.pragma('busy_timeout = 5000');
    db.pragma(`journal_size_limit = ${WAL_SIZE_LIMIT}`);
    return db;
  } catch (e) {
    db?.close();
    throw Object.assign(new Error(`cannot open ${what} ${file}: ${(e as Error).message}`), { code: (e as { code?: string }).code });
  }
}
