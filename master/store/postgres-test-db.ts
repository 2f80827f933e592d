import { randomBytes } from 'node:crypto';
import { Client, escapeIdentifier } from 'pg';
import type { StoreStorage } from './store-suite.js';
import { PostgresStore } from './postgres-store.js';

/** For tests: where the PostgreSQL server is, and what to do when nobody said. */
export const TEST_POSTGRES_ENV = 'CROWDBAKE_TEST_POSTGRES';
export const NO_TEST_POSTGRES = `${TEST_POSTGRES_ENV} is not set, so the PostgreSQL store cannot be tested. Start a server and export its URL:
  eval "$(sudo bash scripts/start-postgres.sh)"    # Debian's PostgreSQL 15; prints export ${TEST_POSTGRES_ENV}=postgres://crowdbake:crowdbake@127.0.0.1:5432/postgres
The URL names a role that may CREATE DATABASE; each test file creates its own databases and drops them.`;

/** `url` with its database name replaced (works for host and socket URLs alike). */
export function withDatabase(url: string, database: string): string {
  return url.replace(/^(postgres(?:ql)?:\/\/[^/?]*)(\/[^?]*)?/, `$1/${encodeURIComponent(database)}`);
}

/**
 * Creates uniquely named databases through the server `adminUrl` names (its database is
 * only used for CREATE/DROP DATABASE) and drops them all in `dropAll()`.
 */
export class TestDatabases {
  private readonly names: string[] = [];
  private readonly prefix = `crowdbake_test_${process.pid}_${randomBytes(3).toString('hex')}`;

  constructor(readonly adminUrl: string) {}

  private async admin<T>(job: (c: Client) => Promise<T>): Promise<T> {
    const c = new Client({ connectionString: this.adminUrl, connectionTimeoutMillis: 10_000 });
    try {
      await c.connect();
    } catch (e) {
      throw new Error(`cannot reach the test PostgreSQL server (${TEST_POSTGRES_ENV}): ${(e as Error).message}\n${NO_TEST_POSTGRES}`);
    }
    try {
      return await job(c);
    } finally {
      await c.end().catch(() => undefined);
    }
  }

  /** A new empty database; returns its URL. */
  async create(): Promise<string> {
    const name = `${this.prefix}_${this.names.length + 1}`;
    // A natural-language collation (as most production databases have), so that any order
    // that differs from SQLite's bytewise one shows; the server's default where ICU is missing.
    await this.admin(async (c) => {
      try {
        await c.query(`CREATE DATABASE ${escapeIdentifier(name)} TEMPLATE template0 ENCODING 'UTF8' LOCALE_PROVIDER icu ICU_LOCALE 'en-US' LOCALE 'C.UTF-8'`);
      } catch {
        await c.query(`CREATE DATABASE ${escapeIdentifier(name)}`);
      }
    });
    this.names.push(name);
    return withDatabase(this.adminUrl, name);
  }

  async dropAll(): Promise<void> {
    const names = this.names.splice(0);
    if (names.length === 0) return;
    await this.admin(async (c) => {
      for (const n of names) {
        try {
          await c.query(`DROP DATABASE IF EXISTS ${escapeIdentifier(n)} WITH (FORCE)`);
        } catch (e) {
          // FORCE must terminate every backend on the database, and the test role may not end a
          // superuser's — an autovacuum worker busy with the tables the test just wrote. A plain
          // DROP makes autovacuum leave by itself (and waits a few seconds for it): end our own
          // connections, then drop that way.
          if ((e as { code?: string }).code !== '42501') throw e;
          await c.query('SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = $1 AND usename = current_user AND pid <> pg_backend_pid()', [n]);
          await c.query(`DROP DATABASE IF EXISTS ${escapeIdentifier(n)}`);
        }
      }
    });
  }

  /** Runs SQL on one of the databases, behind any store's back. */
  async sql<R extends Record<string, unknown>>(url: string, text: string, values: unknown[] = []): Promise<R[]> {
    const c = new Client({ connectionString: url });
    await c.connect();
    try {
      return (await c.query<R>(text, values)).rows;
    } finally {
      await c.end();
    }
  }

  /** Storage for the shared store suite: a fresh database per call. */
  async storage(log: (m: string) => void = () => undefined): Promise<StoreStorage> {
    const url = await this.create();
    return {
      open: () => PostgresStore.open(url, { log }),
      schemaVersion: async () => {
        const rows = await this.sql<{ version: number }>(url, 'SELECT version FROM schema_version');
        if (rows.length !== 1) throw new Error(`schema_version has ${rows.length} rows`);
        return rows[0]!.version;
      },
      setSchemaVersion: async (v) => { await this.sql(url, 'UPDATE schema_version SET version = $1', [v]); },
    };
  }
}
