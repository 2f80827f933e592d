/**
 * Schema migrations, applied in order at start; a store records how many it has applied
 * (table `schema_version`, one row) and refuses to open a store with more than this list.
 * Never edit a released entry; append one, with its text for both dialects. The two texts
 * must give the same tables, columns and behaviour: text timestamps, JSON text labels,
 * names that sort bytewise (SQLite's default; `COLLATE "C"` on PostgreSQL).
 */
export interface Migration {
  sqlite: string;
  postgres: string;
}

export const MIGRATIONS: readonly Migration[] = [
  {
    // Released as the only SQLite schema before PostgreSQL existed: byte for byte unchanged.
    sqlite: `CREATE TABLE tokens (
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
    // SQLite's INTEGER is 64-bit: BIGINT here. AUTOINCREMENT (ids never reused, shared by
    // every master on the database) is an identity column backed by a sequence.
    postgres: `CREATE TABLE tokens (
     name TEXT COLLATE "C" PRIMARY KEY,
     hash TEXT NOT NULL,
     labels TEXT NOT NULL,
     created_at TEXT NOT NULL,
     revoked_at TEXT
   );
   CREATE TABLE workers (
     name TEXT COLLATE "C" PRIMARY KEY,
     capabilities TEXT NOT NULL,
     last_seen_at TEXT NOT NULL
   );
   CREATE TABLE builds (
     id BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
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
     build_id BIGINT NOT NULL,
     idx INTEGER NOT NULL,
     name TEXT NOT NULL,
     state TEXT NOT NULL,
     result TEXT,
     exit_code INTEGER,
     PRIMARY KEY (build_id, idx)
   );
   CREATE TABLE artifacts (
     build_id BIGINT NOT NULL,
     name TEXT COLLATE "C" NOT NULL,
     size BIGINT NOT NULL,
     sha256 TEXT NOT NULL,
     worker TEXT,
     PRIMARY KEY (build_id, name)
   );`,
  },
  {
    // The branch a build is for, why it was queued, the build it rebuilds, the build that superseded it.
    sqlite: `ALTER TABLE builds ADD COLUMN branch TEXT;
   ALTER TABLE builds ADD COLUMN trigger_kind TEXT NOT NULL DEFAULT 'force';
   ALTER TABLE builds ADD COLUMN rebuild_of INTEGER;
   ALTER TABLE builds ADD COLUMN superseded_by INTEGER;`,
    postgres: `ALTER TABLE builds ADD COLUMN branch TEXT;
   ALTER TABLE builds ADD COLUMN trigger_kind TEXT NOT NULL DEFAULT 'force';
   ALTER TABLE builds ADD COLUMN rebuild_of BIGINT;
   ALTER TABLE builds ADD COLUMN superseded_by BIGINT;`,
  },
  {
    // Result verification: which builds are replicas of which, their verdicts, and the marks
    // on workers whose artifacts disagreed.
    sqlite: `CREATE TABLE verifications (
     build_id INTEGER PRIMARY KEY,
     group_id INTEGER NOT NULL,
     replicas INTEGER NOT NULL,
     verdict TEXT NOT NULL,
     detail TEXT
   );
   CREATE INDEX verifications_group ON verifications (group_id);
   CREATE TABLE worker_flags (
     worker TEXT NOT NULL,
     build_id INTEGER NOT NULL,
     reason TEXT NOT NULL,
     at TEXT NOT NULL,
     PRIMARY KEY (worker, build_id)
   );`,
    postgres: `CREATE TABLE verifications (
     build_id BIGINT PRIMARY KEY,
     group_id BIGINT NOT NULL,
     replicas INTEGER NOT NULL,
     verdict TEXT NOT NULL,
     detail TEXT
   );
   CREATE INDEX verifications_group ON verifications (group_id);
   CREATE TABLE worker_flags (
     worker TEXT COLLATE "C" NOT NULL,
     build_id BIGINT NOT NULL,
     reason TEXT NOT NULL,
     at TEXT NOT NULL,
     PRIMARY KEY (worker, build_id)
   );`,
  },
  {
    // How many builds at once the admin grants a token (`token create --max-builds`); the
    // master runs min(what the worker offers, this). Tokens from before get the default, 4.
    sqlite: `ALTER TABLE tokens ADD COLUMN max_builds INTEGER NOT NULL DEFAULT 4;`,
    postgres: `ALTER TABLE tokens ADD COLUMN max_builds INTEGER NOT NULL DEFAULT 4;`,
  },
  {
    // [crowd]: invitations (the code stored as its sha256 only), volunteers and every change of
    // their trust, which volunteer a worker token belongs to and the worker's own public key,
    // credit per worker (all-time totals and per-day rows), and the farm's capacity by hour of week.
    sqlite: `ALTER TABLE tokens ADD COLUMN volunteer_id TEXT;
   ALTER TABLE tokens ADD COLUMN worker_key TEXT;
   CREATE TABLE invites (
     id TEXT PRIMARY KEY,
     code_hash TEXT NOT NULL UNIQUE,
     labels TEXT NOT NULL,
     max_builds INTEGER NOT NULL,
     max_uses INTEGER NOT NULL,
     uses_left INTEGER NOT NULL,
     expires_at TEXT,
     note TEXT NOT NULL,
     created_at TEXT NOT NULL,
     revoked_at TEXT
   );
   CREATE TABLE volunteers (
     id TEXT PRIMARY KEY,
     public_key TEXT NOT NULL UNIQUE,
     display_name TEXT NOT NULL,
     listed INTEGER NOT NULL,
     trust TEXT NOT NULL,
     trust_source TEXT NOT NULL,
     streak INTEGER NOT NULL DEFAULT 0,
     created_at TEXT NOT NULL
   );
   CREATE TABLE trust_events (
     id INTEGER PRIMARY KEY AUTOINCREMENT,
     volunteer_id TEXT NOT NULL,
     trust TEXT NOT NULL,
     previous TEXT,
     source TEXT NOT NULL,
     reason TEXT NOT NULL,
     at TEXT NOT NULL
   );
   CREATE INDEX trust_events_volunteer ON trust_events (volunteer_id, id);
   CREATE TABLE credit_days (
     day TEXT NOT NULL,
     worker TEXT NOT NULL,
     volunteer_id TEXT,
     builds INTEGER NOT NULL,
     cpu_ms BIGINT NOT NULL,
     wall_ms BIGINT NOT NULL,
     agreed INTEGER NOT NULL,
     disagreed INTEGER NOT NULL,
     PRIMARY KEY (day, worker)
   );
   CREATE TABLE credit_totals (
     worker TEXT PRIMARY KEY,
     volunteer_id TEXT,
     builds INTEGER NOT NULL,
     cpu_ms BIGINT NOT NULL,
     wall_ms BIGINT NOT NULL,
     agreed INTEGER NOT NULL,
     disagreed INTEGER NOT NULL
   );
   CREATE TABLE capacity (
     hour_of_week INTEGER PRIMARY KEY,
     samples INTEGER NOT NULL,
     workers_sum BIGINT NOT NULL,
     workers_max INTEGER NOT NULL
   );`,
    postgres: `ALTER TABLE tokens ADD COLUMN volunteer_id TEXT;
   ALTER TABLE tokens ADD COLUMN worker_key TEXT;
   CREATE TABLE invites (
     id TEXT COLLATE "C" PRIMARY KEY,
     code_hash TEXT NOT NULL UNIQUE,
     labels TEXT NOT NULL,
     max_builds INTEGER NOT NULL,
     max_uses INTEGER NOT NULL,
     uses_left INTEGER NOT NULL,
     expires_at TEXT,
     note TEXT NOT NULL,
     created_at TEXT NOT NULL,
     revoked_at TEXT
   );
   CREATE TABLE volunteers (
     id TEXT COLLATE "C" PRIMARY KEY,
     public_key TEXT NOT NULL UNIQUE,
     display_name TEXT NOT NULL,
     listed INTEGER NOT NULL,
     trust TEXT NOT NULL,
     trust_source TEXT NOT NULL,
     streak INTEGER NOT NULL DEFAULT 0,
     created_at TEXT NOT NULL
   );
   CREATE TABLE trust_events (
     id BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
     volunteer_id TEXT NOT NULL,
     trust TEXT NOT NULL,
     previous TEXT,
     source TEXT NOT NULL,
     reason TEXT NOT NULL,
     at TEXT NOT NULL
   );
   CREATE INDEX trust_events_volunteer ON trust_events (volunteer_id, id);
   CREATE TABLE credit_days (
     day TEXT NOT NULL,
     worker TEXT COLLATE "C" NOT NULL,
     volunteer_id TEXT,
     builds INTEGER NOT NULL,
     cpu_ms BIGINT NOT NULL,
     wall_ms BIGINT NOT NULL,
     agreed INTEGER NOT NULL,
     disagreed INTEGER NOT NULL,
     PRIMARY KEY (day, worker)
   );
   CREATE TABLE credit_totals (
     worker TEXT COLLATE "C" PRIMARY KEY,
     volunteer_id TEXT,
     builds INTEGER NOT NULL,
     cpu_ms BIGINT NOT NULL,
     wall_ms BIGINT NOT NULL,
     agreed INTEGER NOT NULL,
     disagreed INTEGER NOT NULL
   );
   CREATE TABLE capacity (
     hour_of_week INTEGER PRIMARY KEY,
     samples INTEGER NOT NULL,
     workers_sum BIGINT NOT NULL,
     workers_max INTEGER NOT NULL
   );`,
  },
  {
    // [cloud] One-time credentials (a cloud worker's user-data carries one: good for one
    // connection, refused once used or past its expiry) and the instance time each cloud
    // provisioner used per UTC day, which its daily and monthly budgets are counted from.
    sqlite: `ALTER TABLE tokens ADD COLUMN one_time INTEGER NOT NULL DEFAULT 0;
   ALTER TABLE tokens ADD COLUMN expires_at TEXT;
   ALTER TABLE tokens ADD COLUMN used_at TEXT;
   CREATE TABLE cloud_usage (
     provisioner TEXT NOT NULL,
     day TEXT NOT NULL,
     instance_ms BIGINT NOT NULL,
     PRIMARY KEY (provisioner, day)
   );`,
    postgres: `ALTER TABLE tokens ADD COLUMN one_time INTEGER NOT NULL DEFAULT 0;
   ALTER TABLE tokens ADD COLUMN expires_at TEXT;
   ALTER TABLE tokens ADD COLUMN used_at TEXT;
   CREATE TABLE cloud_usage (
     provisioner TEXT COLLATE "C" NOT NULL,
     day TEXT NOT NULL,
     instance_ms BIGINT NOT NULL,
     PRIMARY KEY (provisioner, day)
   );`,
  },
  {
    // Which attempt uploaded each artifact: only the accepted (current) attempt's are listed,
    // served and bundled. Rows from before have no attempt (NULL) and stay listed as they were.
    sqlite: 'ALTER TABLE artifacts ADD COLUMN attempt INTEGER;',
    postgres: 'ALTER TABLE artifacts ADD COLUMN attempt INTEGER;',
  },
];

/** The refusal when a store was migrated by a newer Crowdbake than this one. */
export function schemaTooNewError(current: number): Error {
  return new Error(`the store's schema is version ${current}, newer than this Crowdbake (${MIGRATIONS.length}); upgrade Crowdbake`);
}
