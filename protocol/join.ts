import * as z from 'zod';
import { NameSchema } from './build-spec.js';

/**
 * Joining a farm in one step ([crowd]): the contract between `crowdbake invite create` /
 * open enrollment on the master and `crowdbake join LINK` on a volunteer's computer.
 *
 * A join link is `crowdbake://join?master=<the master's http(s) base URL>[&code=<invite
 * code>][&pin=sha256:<hex>][&farm=<display name>]`. Without `code` it is the farm's public
 * link, good only while `enrollment.mode` is `open`. The `pin` is the master's TLS
 * certificate fingerprint, so the very first connection is already pinned.
 *
 * Joining: the worker makes its own credential — a token secret and an Ed25519 key pair —
 * and sends `POST /api/v1/join` with the invite code, the sha256 of the secret (never the
 * secret) and the public keys. The master spends (or counts) the code and answers with the
 * worker's name and the labels granted. The invite code is never the credential and is not
 * stored by the worker. The token the worker then uses is `cbw1.<worker>.<secret>`.
 *
 * No I/O here; protocol/ imports only zod.
 */

export const JOIN_LINK_SCHEME = 'crowdbake:';

export interface JoinLink {
  /** The master's http(s) base URL, e.g. `https://farm.example.org:8585`. */
  master: string;
  /** The invite code; absent on a farm's public (open enrollment) link. */
  code?: string;
  /** `sha256:HEX` of the master's TLS certificate. */
  pin?: string;
  /** The farm's display name, shown to the volunteer before joining. */
  farm?: string;
}

const CODE_RE = /^[A-Za-z0-9_-]{16,128}$/;
const PIN_RE = /^sha256:[0-9a-fA-F]{64}$/;

/** The link for `link`; `parseJoinLink(formatJoinLink(l))` gives `l` back. */
export function formatJoinLink(link: JoinLink): string {
  const q = new URLSearchParams({ master: link.master });
  if (link.code) q.set('code', link.code);
  if (link.pin) q.set('pin', link.pin.toLowerCase());
  if (link.farm) q.set('farm', link.farm);
  return `crowdbake://join?${q.toString()}`;
}

/** Parses a join link, or throws a sentence saying what is wrong with it. */
export function parseJoinLink(text: string): JoinLink {
  const raw = text.trim();
  let u: URL;
  try {
    u = new URL(raw);
  } catch {
    throw new Error('this is not a join link (expected crowdbake://join?master=…&code=…, as `crowdbake invite create` prints it)');
  }
  if (u.protocol !== JOIN_LINK_SCHEME || (u.hostname !== 'join' && u.pathname.replace(/^\/+/, '') !== 'join')) {
    throw new Error(`"${raw.slice(0, 80)}" is not a join link (expected crowdbake://join?master=…&code=…)`);
  }
  const master = u.searchParams.get('master');
  if (!master) throw new Error('the join link names no master (its master= part is missing)');
  let m: URL;
  try {
    m = new URL(master);
  } catch {
    throw new Error(`the join link's master "${master.slice(0, 80)}" is not a URL`);
  }
  if (m.protocol !== 'https:' && m.protocol !== 'http:') throw new Error(`the join link's master "${master.slice(0, 80)}" must be an http:// or https:// URL`);
  if (m.username || m.password) throw new Error('the join link\'s master URL must not carry credentials');
  const out: JoinLink = { master: m.origin };
  const code = u.searchParams.get('code');
  if (code !== null) {
    if (!CODE_RE.test(code)) throw new Error('the join link\'s invite code is damaged (it should be 16-128 letters, digits, - or _); copy the whole link again');
    out.code = code;
  }
  const pin = u.searchParams.get('pin');
  if (pin !== null) {
    if (!PIN_RE.test(pin)) throw new Error('the join link\'s pin is damaged (expected sha256: followed by 64 hex digits); copy the whole link again');
    out.pin = pin.toLowerCase();
  }
  const farm = u.searchParams.get('farm');
  if (farm) out.farm = farm.slice(0, 100);
  if (m.protocol === 'http:' && out.pin) throw new Error('the join link pins a certificate but names an http:// master');
  return out;
}

/** A display name a volunteer chooses (shown publicly unless they ask not to be listed). */
export const DisplayNameSchema = z.string().trim().min(1).max(64)
  .regex(/^[^\u0000-\u001f\u007f<>]+$/, 'must not contain control characters or < >');

/** Ed25519 public key, SPKI DER as base64 (what `crypto.createPublicKey(...).export({ type: 'spki', format: 'der' })` gives). */
export const PublicKeySchema = z.string().regex(/^[A-Za-z0-9+/]{40,100}={0,2}$/, 'must be an Ed25519 public key (SPKI DER, base64)');

/** `POST /api/v1/join` body. */
export const JoinRequestSchema = z.strictObject({
  /** The invite code; absent for open enrollment. */
  code: z.string().regex(CODE_RE).optional(),
  /** The worker's name (it becomes the token's name); the master may refuse a taken name with 409. */
  worker: NameSchema,
  /** sha256 (hex) of the token secret the worker made; the master stores only this. */
  tokenHash: z.string().regex(/^[0-9a-f]{64}$/, 'must be the sha256 of the token secret, 64 lower-case hex digits'),
  /** The worker's own signing key ([provenance] signs build statements with it). */
  workerKey: PublicKeySchema,
  /** The volunteer's identity key: workers joined with the same key belong to the same volunteer. */
  volunteerKey: PublicKeySchema,
  /** Signature (base64) by the volunteer key over `crowdbake-join\n<worker>\n<tokenHash>\n<workerKey>\n<code or "">`. */
  volunteerSignature: z.string().regex(/^[A-Za-z0-9+/]{86}==$/, 'must be an Ed25519 signature, base64'),
  /** The public display name the volunteer chose. */
  displayName: DisplayNameSchema,
  /** Whether the volunteer may be listed publicly (Contributors page). */
  listed: z.boolean().default(true),
});
export type JoinRequest = z.infer<typeof JoinRequestSchema>;

/** The bytes the volunteer key signs in a join request. */
export function joinSignedText(r: Pick<JoinRequest, 'worker' | 'tokenHash' | 'workerKey' | 'code'>): string {
  return `crowdbake-join\n${r.worker}\n${r.tokenHash}\n${r.workerKey}\n${r.code ?? ''}`;
}

/** `POST /api/v1/join` answer (201). */
export const JoinResponseSchema = z.object({
  worker: NameSchema,
  volunteer: z.object({ id: z.string(), displayName: z.string(), trust: z.enum(['new', 'trusted', 'banned']) }),
  labels: z.array(z.string()),
  maxBuilds: z.number().int().positive(),
  /** The farm's display name (crowdbake.yml `name`), for `crowdbake projects`. */
  farm: z.string(),
});
export type JoinResponse = z.infer<typeof JoinResponseSchema>;

/** Why a join was refused: `POST /api/v1/join` answers 4xx with `{ error, reason }`. */
export const JOIN_REFUSALS = ['unknown-code', 'used-up', 'expired', 'revoked', 'closed', 'invite-only', 'banned', 'name-taken', 'rate-limited'] as const;
export type JoinRefusal = (typeof JOIN_REFUSALS)[number];
