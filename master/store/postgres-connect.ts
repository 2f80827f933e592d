import { Client, DatabaseError } from 'pg';
import { MIGRATIONS, schemaTooNewError } from './migrations.js';

/**
 * Key of the advisory lock held while migrating, so that masters starting at once on one
 * database migrate one after the other. Advisory locks are per database: other databases
 * on the same server do not wait for it.
 */
export const MIGRATION_LOCK_KEY = 0x63726f77_62616b65n; // "crowbake"

/**
 * Opens one connection to the server a `postgres://` URL names. `onLost` hears of the
 * connection failing or ending after it was established. Errors name the server, database
 * and user (never the password) and say why: refused, authentication, no such database.
 */
export async function connectPostgres(url: string, onLost: (client: Client, why: Error) => void): Promise<Client> {
  let client: Client;
  try {
    client = new Client({ connectionString: url, connectionTimeoutMillis: 10_000, keepAlive: true, application_name: 'crowdbake' });
  } catch (e) {
    throw new Error(`--store ${redact(url)}: not a PostgreSQL URL: ${(e as Error).message}`);
  }
  // Attached before connecting: an 'error' event without a listener would end the process.
  client.on('error', (e) => onLost(client, e));
  client.on('end', () => onLost(client, new Error('the server closed the connection')));
  try {
    await client.connect();
  } catch (e) {
    await client.end().catch(() => undefined);
    throw new Error(`cannot open the PostgreSQL store ${describeTarget(client)}: ${explain(e, client)}`);
  }
  return client;
}

/** `database "db" on HOST:PORT as user "u"`: what a connection error needs to name. */
export function describeTarget(c: Client): string {
  const where = c.host?.startsWith('/') ? `the socket in ${c.host} (port ${c.port})` : `${c.host}:${c.port}`;
  return `(database "${c.database ?? ''}" on ${where} as user "${c.user ?? ''}")`;
}

function explain(e: unknown, c: Client): string {
  const err = e as NodeJS.ErrnoException & { code?: string };
  const msg = err?.message ?? String(e);
  if (e instanceof DatabaseError) {
    if (err.code === '3D000') return `the database "${c.database}" does not exist: create it (createdb ${c.database}) or name another one in the URL`;
    if (err.code === '28P01') return `authentication failed: ${msg}`;
    if (err.code === '28000') return `authentication refused: ${msg} (see the server's pg_hba.conf)`;
    if (err.code === '57P03') return `the server is starting up or shutting down: ${msg}`;
    return msg;
  }
  if (err.code === 'ECONNREFUSED') return 'connection refused: is PostgreSQL running and listening there?';
  if (err.code === 'ENOENT') return 'no server socket there: is PostgreSQL running?';
  if (err.code === 'ENOTFOUND' || err.code === 'EAI_AGAIN') return `unknown host "${c.host}"`;
  if (/timeout/i.test(msg)) return 'the connection timed out (10 s)';
  if (/password must be a string/.test(msg)) return 'authentication failed: the server asks for a password and the URL has none';
  return msg;
}

/** The URL without its password, for messages. */
export function redact(url: string): string {
  return url.replace(/^([a-z]+:\/\/[^:/@]*):[^@/]*@/i, '$1:***@').replace(/([?&]password=)[^&]*/i, '$1***');
}

/**
 * Brings the schema up to date in one transaction, holding the migration lock: a second
 * master waits, then finds nothing left to do. Refuses a schema newer than this code.
 */
export async function migratePostgres(c: Client): Promise<void> {
  await c.query('BEGIN');
  try {
    await c.query('SELECT pg_advisory_xact_lock($1)', [MIGRATION_LOCK_KEY.toString()]);
    try {
      await c.query('CREATE TABLE IF NOT EXISTS schema_version (version INTEGER NOT NULL)');
    } catch (e) {
      throw new Error(`cannot create the schema_version table: ${migrationHint(e)}`, { cause: e });
    }
    const r = await c.query<{ version: number }>('SELECT version FROM schema_version');
    const current = r.rows[0]?.version ?? 0;
    if (current > MIGRATIONS.length) throw schemaTooNewError(current);
    for (let v = current; v < MIGRATIONS.length; v++) {
      try {
        await c.query(MIGRATIONS[v]!.postgres);
      } catch (e) {
        throw new Error(`migration ${v + 1} of ${MIGRATIONS.length} failed: ${migrationHint(e)}`, { cause: e });
      }
    }
    if (current < MIGRATIONS.length) {
      await c.query('DELETE FROM schema_version');
      await c.query('INSERT INTO schema_version (version) VALUES ($1)', [MIGRATIONS.length]);
    }
    await c.query('COMMIT');
  } catch (e) {
    await c.query('ROLLBACK').catch(() => undefined);
    throw e;
  }
}

function migrationHint(e: unknown): string {
  const msg = (e as Error).message;
  if (e instanceof DatabaseError && e.code === '42501') {
    return `${msg}: the user needs the right to create tables there (e.g. make it the database's owner: ALTER DATABASE … OWNER TO …)`;
  }
  return msg;
}
