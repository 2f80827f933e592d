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
    // Several masters on one PostgreSQL (master/store/claims.ts): who holds a running attempt
    // (`holder`, a master's id in `masters`), until when a released attempt waits for its
    // worker to come back (`orphan_until`), the masters' own leases and the singletons'
    // leases. SQLite gets the same columns and tables; one master never uses them.
    sqlite: `ALTER TABLE builds ADD COLUMN holder TEXT;
   ALTER TABLE builds ADD COLUMN orphan_until TEXT;
   CREATE TABLE masters (id TEXT PRIMARY KEY, url TEXT NOT NULL, alive_until TEXT NOT NULL, joined_at TEXT NOT NULL);
   CREATE TABLE leases (name TEXT PRIMARY KEY, holder TEXT NOT NULL, expires_at TEXT NOT NULL);`,
    postgres: `ALTER TABLE builds ADD COLUMN holder TEXT;
   ALTER TABLE builds ADD COLUMN orphan_until TIMESTAMPTZ;
   CREATE INDEX builds_unfinished ON builds (state) WHERE state <> 'finished';
   CREATE TABLE masters (id TEXT PRIMARY KEY, url TEXT NOT NULL, alive_until TIMESTAMPTZ NOT NULL, joined_at TIMESTAMPTZ NOT NULL);
   CREATE TABLE leases (name TEXT PRIMARY KEY, holder TEXT NOT NULL, expires_at TIMESTAMPTZ NOT NULL);`,
  },
  {
    // Several masters: build logs as rows (master/store/postgres-logs.ts), in `seq` order. A
    // worker's text carries its attempt and its range in that attempt's log (FEATURE_LOG_ACK);
    // the master's own notes have neither. SQLite gets the table too; one master keeps files.
    sqlite: `CREATE TABLE log_chunks (seq INTEGER PRIMARY KEY AUTOINCREMENT, build_id INTEGER NOT NULL, attempt INTEGER, worker_from INTEGER, worker_to INTEGER, data BLOB NOT NULL);
   CREATE INDEX log_chunks_build ON log_chunks (build_id, seq);`,
    postgres: `CREATE TABLE log_chunks (seq BIGSERIAL PRIMARY KEY, build_id BIGINT NOT NULL, attempt INTEGER, worker_from BIGINT, worker_to BIGINT, data BYTEA NOT NULL);
   CREATE INDEX log_chunks_build ON log_chunks (build_id, seq);
   CREATE INDEX log_chunks_attempt ON log_chunks (build_id, attempt, worker_to) WHERE attempt IS NOT NULL;`,
  },
  {
    // Several masters: webhook replay protection shared by the farm (store/postgres-webhooks.ts);
    // one master keeps it in DATA/webhooks.json. `heads`: a JSON array of a branch's past heads.
    sqlite: `CREATE TABLE webhook_deliveries (id TEXT PRIMARY KEY, at TEXT NOT NULL);
   CREATE TABLE webhook_heads (key TEXT PRIMARY KEY, heads TEXT NOT NULL);`,
    postgres: `CREATE TABLE webhook_deliveries (id TEXT COLLATE "C" PRIMARY KEY, at TIMESTAMPTZ NOT NULL);
   CREATE TABLE webhook_heads (key TEXT COLLATE "C" PRIMARY KEY, heads TEXT NOT NULL);`,
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
