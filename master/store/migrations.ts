/**
 * Schema migrations, applied in order at start. Never edit a released entry; append one.
 * The SQL is plain enough to run on SQLite and PostgreSQL alike.
 */
export const MIGRATIONS: readonly string[] = [
  `CREATE TABLE tokens (
     name TEXT PRIMARY KEY,
     hash TEXT NOT NULL,
     labels TEXT NOT NULL,
     created_at TEXT NOT NULL,
     revoked_at TEXT
   );
   CREATE TABLE workers (
     name TEXT PRIMARY KEY,
     capabilities TEXT NOT NULL,
     last_seen_at TEXT NOT NULL
   );
   CREATE TABLE builds (
     id INTEGER PRIMARY KEY AUTOINCREMENT,
     builder TEXT NOT NULL,
     revision TEXT,
     reason TEXT,
     state TEXT NOT NULL,
     result TEXT,
     worker TEXT,
     attempt INTEGER NOT NULL DEFAULT 0,
     message TEXT,
     queued_at TEXT NOT NULL,
     started_at TEXT,
     finished_at TEXT
   );
   CREATE INDEX builds_builder ON builds (builder, id);
   CREATE INDEX builds_state ON builds (state, id);
   CREATE TABLE steps (
     build_id INTEGER NOT NULL,
     idx INTEGER NOT NULL,
     name TEXT NOT NULL,
     state TEXT NOT NULL,
     result TEXT,
     exit_code INTEGER,
     PRIMARY KEY (build_id, idx)
   );
   CREATE TABLE artifacts (
     build_id INTEGER NOT NULL,
     name TEXT NOT NULL,
     size INTEGER NOT NULL,
     sha256 TEXT NOT NULL,
     worker TEXT,
     PRIMARY KEY (build_id, name)
   );`,
];
