import { createHash, randomBytes, timingSafeEqual } from 'node:crypto';
import { chmodSync, existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { NameSchema } from '../protocol/build-spec.js';
import type { Store, TokenRow, VolunteerRow } from './store/store.js';

/**
 * Worker tokens look like `cbw1.<name>.<secret>`: the name says which worker the token
 * belongs to (it is not secret); only sha256(secret) is stored, compared in constant time.
 */
const TOKEN_RE = /^cbw1\.([A-Za-z0-9][A-Za-z0-9._-]{0,63})\.([A-Za-z0-9_-]{32,})$/;

export function sha256Hex(text: string): string {
  return createHash('sha256').update(text).digest('hex');
}

/** Constant-time comparison of two secrets of any length (compares their hashes). */
export function secretsEqual(a: string, b: string): boolean {
  return timingSafeEqual(createHash('sha256').update(a).digest(), createHash('sha256').update(b).digest());
}

export function parseWorkerToken(token: string): { name: string; secret: string } | null {
  const m = TOKEN_RE.exec(token);
  return m ? { name: m[1]!, secret: m[2]! } : null;
}

/** Builds at once a token is granted unless the admin says otherwise (`token create --max-builds`). */
export const DEFAULT_TOKEN_MAX_BUILDS = 4;
/** The most a worker may offer (protocol/from-worker.ts, `maxBuilds`), so the most a token can be granted. */
export const MAX_TOKEN_MAX_BUILDS = 256;

/**
 * Makes a worker token. `labels` and `maxBuilds` are the admin's grants: the master matches
 * builders' `requires.labels` against these labels only, and runs at most min(maxBuilds, what
 * the worker offers) builds on it at once.
 */
export async function createWorkerToken(store: Store, name: string, labels: string[], maxBuilds: number = DEFAULT_TOKEN_MAX_BUILDS): Promise<string> {
  const valid = NameSchema.safeParse(name);
  if (!valid.success) throw new Error(`token name "${name}": ${valid.error.issues[0]?.message}`);
  if (!Number.isInteger(maxBuilds) || maxBuilds < 1 || maxBuilds > MAX_TOKEN_MAX_BUILDS) {
    throw new Error(`max builds ${maxBuilds}: must be a whole number from 1 to ${MAX_TOKEN_MAX_BUILDS}`);
  }
  for (const l of labels) {
    if (l.length === 0 || l.length > 100) throw new Error(`label "${l}": must be 1-100 characters`);
  }
  const secret = randomBytes(32).toString('base64url');
  const row: TokenRow = { name, hash: sha256Hex(secret), labels, maxBuilds, createdAt: new Date().toISOString(), revokedAt: null };
  await store.createToken(row);
  return `cbw1.${name}.${secret}`;
}

/** How long a one-time credential stays good unused (a cloud instance boots and dials in within it). */
export const ONE_TIME_TTL_MS = 15 * 60_000;

/**
 * [cloud] Makes a one-time credential for a cloud worker's user-data: a worker token
 * (`cbw1.NAME.SECRET`, only its hash stored) that is good for ONE connection — spent by the
 * hello that uses it, refused on a second use — and, unused, for `ttlMs` only. Its session
 * is given one build (the hub sets `buildsLeft: 1`). So what sits in the instance's user-data
 * is worth nothing once the worker has connected, nor after the expiry.
 */
export async function createOneTimeCredential(store: Store, name: string, labels: string[], ttlMs: number = ONE_TIME_TTL_MS): Promise<string> {
  const valid = NameSchema.safeParse(name);
  if (!valid.success) throw new Error(`credential name "${name}": ${valid.error.issues[0]?.message}`);
  const secret = randomBytes(32).toString('base64url');
  const now = Date.now();
  await store.createToken({
    name, hash: sha256Hex(secret), labels, maxBuilds: 1, createdAt: new Date(now).toISOString(), revokedAt: null,
    oneTime: true, expiresAt: new Date(now + ttlMs).toISOString(),
  });
  return `cbw1.${name}.${secret}`;
}

/**
 * `volunteer` is the volunteer who joined with the token ([crowd]); null for a token the
 * maintainer made with `token create` (trusted: the maintainer handed it out).
 */
export type TokenCheck = { ok: true; token: TokenRow; volunteer: VolunteerRow | null } | { ok: false; reason: string };

/** Checks a worker's token; the reason is safe to tell the worker (it leaks nothing secret). */
export async function verifyWorkerToken(store: Store, presented: string): Promise<TokenCheck> {
  const parsed = parseWorkerToken(presented);
  if (!parsed) return { ok: false, reason: 'malformed token (expected cbw1.NAME.SECRET from `crowdbake token create`)' };
  const row = await store.getToken(parsed.name);
  // Compare even when the row is missing, so timing does not tell which names exist.
  const equal = secretsEqual(sha256Hex(parsed.secret), row?.hash ?? '0'.repeat(64));
  if (!row || !equal) return { ok: false, reason: 'invalid token' };
  if (row.revokedAt) return { ok: false, reason: 'token revoked' };
  if (row.oneTime) {
    const at = new Date().toISOString();
    if (row.usedAt) return { ok: false, reason: `this one-time credential was already used (at ${row.usedAt}); it is good for one connection only` };
    if (row.expiresAt && row.expiresAt <= at) return { ok: false, reason: `this one-time credential expired unused at ${row.expiresAt}` };
    // Spent in one statement: of two hellos racing with the same credential, one wins.
    if (!(await store.useOneTimeToken(row.name, at))) return { ok: false, reason: 'this one-time credential was already used; it is good for one connection only' };
    return { ok: true, token: { ...row, usedAt: at }, volunteer: null };
  }
  const volunteer = row.volunteerId ? await store.getVolunteer(row.volunteerId) : null;
  if (row.volunteerId && !volunteer) return { ok: false, reason: 'invalid token' };
  if (volunteer?.trust === 'banned') return { ok: false, reason: 'volunteer banned' };
  return { ok: true, token: row, volunteer };
}

/**
 * The admin token for REST writes: `CROWDBAKE_ADMIN_TOKEN` if set, else `DATA/admin.token`
 * (created with mode 0600 on first start).
 */
export function loadAdminToken(dataDir: string, env: NodeJS.ProcessEnv = process.env): string {
  const fromEnv = env.CROWDBAKE_ADMIN_TOKEN?.trim();
  if (fromEnv) return fromEnv;
  const file = join(dataDir, 'admin.token');
  if (existsSync(file)) {
    const t = readFileSync(file, 'utf8').trim();
    if (!t) throw new Error(`${file} is empty; delete it to make a new admin token`);
    return t;
  }
  mkdirSync(dataDir, { recursive: true });
  const token = `cba1.${randomBytes(32).toString('base64url')}`;
  writeFileSync(file, `${token}\n`, { mode: 0o600 });
  chmodSync(file, 0o600);
  return token;
}
