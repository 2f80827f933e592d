import { randomBytes } from 'node:crypto';
import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import type { InviteView } from '../../protocol/api.js';
import { formatJoinLink } from '../../protocol/join.js';
import type { InviteRow, Store } from '../store/store.js';
import { DEFAULT_TOKEN_MAX_BUILDS, MAX_TOKEN_MAX_BUILDS, sha256Hex } from '../tokens.js';

/**
 * Invitations ([crowd]): a maintainer makes one (`crowdbake invite create`, `POST
 * /api/v1/invites`); its join link carries a random code, stored as its sha256 only. Joining
 * spends a use; the code is never a credential (the worker makes its own token).
 */

export interface InviteOptions {
  labels?: string[];
  maxBuilds?: number;
  uses?: number;
  expiresInMs?: number;
  note?: string;
}

/** What the master knows of itself for join links: written to DATA/farm.json at start. */
export interface FarmInfo {
  /** The master's http(s) base URL as volunteers reach it. */
  url: string;
  name: string;
  /** `sha256:HEX` of its TLS certificate; null without TLS. */
  pin: string | null;
}

const FARM_FILE = 'farm.json';

export function writeFarmInfo(dataDir: string, info: FarmInfo): void {
  writeFileSync(join(dataDir, FARM_FILE), `${JSON.stringify(info)}\n`);
}

/** DATA/farm.json as the master last wrote it (and the pin from DATA/tls.fingerprint); null before the master ever ran. */
export function readFarmInfo(dataDir: string): FarmInfo | null {
  const file = join(dataDir, FARM_FILE);
  let info: FarmInfo | null = null;
  if (existsSync(file)) {
    try {
      const j = JSON.parse(readFileSync(file, 'utf8')) as Partial<FarmInfo>;
      if (typeof j.url === 'string') info = { url: j.url, name: typeof j.name === 'string' ? j.name : 'crowdbake', pin: typeof j.pin === 'string' ? j.pin : null };
    } catch { /* a damaged file: as if absent */ }
  }
  const fp = join(dataDir, 'tls.fingerprint');
  if (info && !info.pin && existsSync(fp)) info.pin = readFileSync(fp, 'utf8').trim() || null;
  return info;
}

export function joinLinkFor(farm: FarmInfo, code?: string): string {
  return formatJoinLink({
    master: farm.url, ...(code ? { code } : {}), ...(farm.pin && farm.url.startsWith('https:') ? { pin: farm.pin } : {}), farm: farm.name,
  });
}

/** Checks the options, stores the invite (the code's sha256 only) and returns it with its code. */
export async function createInvite(store: Store, o: InviteOptions, now = new Date()): Promise<{ row: InviteRow; code: string }> {
  const labels = o.labels ?? [];
  for (const l of labels) if (l.length === 0 || l.length > 100) throw new Error(`label "${l}": must be 1-100 characters`);
  const maxBuilds = o.maxBuilds ?? DEFAULT_TOKEN_MAX_BUILDS;
  if (!Number.isInteger(maxBuilds) || maxBuilds < 1 || maxBuilds > MAX_TOKEN_MAX_BUILDS) {
    throw new Error(`max builds ${maxBuilds}: must be a whole number from 1 to ${MAX_TOKEN_MAX_BUILDS}`);
  }
  const uses = o.uses ?? 1;
  if (!Number.isInteger(uses) || uses < 1 || uses > 1_000_000) throw new Error(`uses ${uses}: must be a whole number from 1 to 1000000`);
  if (o.expiresInMs !== undefined && !(o.expiresInMs > 0)) throw new Error('expires: must be a duration of more than 0');
  const note = o.note ?? '';
  if (note.length > 500) throw new Error('note: at most 500 characters');
  const code = randomBytes(24).toString('base64url');
  const row: InviteRow = {
    id: `inv-${randomBytes(5).toString('hex')}`, codeHash: sha256Hex(code), labels, maxBuilds, maxUses: uses, usesLeft: uses,
    expiresAt: o.expiresInMs !== undefined ? new Date(now.getTime() + o.expiresInMs).toISOString() : null,
    note, createdAt: now.toISOString(), revokedAt: null,
  };
  await store.createInvite(row);
  return { row, code };
}

export function inviteState(row: InviteRow, now = new Date().toISOString()): InviteView['state'] {
  if (row.revokedAt) return 'revoked';
  if (row.expiresAt !== null && row.expiresAt <= now) return 'expired';
  if (row.usesLeft <= 0) return 'used-up';
  return 'active';
}

export function inviteView(row: InviteRow, now?: string): InviteView {
  const { codeHash: _hidden, ...rest } = row;
  return { ...rest, state: inviteState(row, now) };
}
