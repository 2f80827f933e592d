import { createPublicKey, randomBytes, verify, type KeyObject } from 'node:crypto';
import { describeIssues } from '../../protocol/parse.js';
import { joinSignedText, JoinRequestSchema, type JoinRefusal, type JoinRequest, type JoinResponse } from '../../protocol/join.js';
import { AuthThrottle } from '../auth-throttle.js';
import type { Store } from '../store/store.js';
import { DEFAULT_TOKEN_MAX_BUILDS, sha256Hex } from '../tokens.js';

export type EnrollmentMode = 'invite' | 'open' | 'closed';

export type JoinResult =
  | { ok: true; body: JoinResponse }
  | { ok: false; status: number; reason: JoinRefusal | null; error: string };

const HOUR_MS = 3_600_000;

/** An Ed25519 public key from SPKI DER (base64), or null when it is not one. */
export function ed25519Key(spkiBase64: string): KeyObject | null {
  try {
    const key = createPublicKey({ key: Buffer.from(spkiBase64, 'base64'), format: 'der', type: 'spki' });
    return key.asymmetricKeyType === 'ed25519' ? key : null;
  } catch {
    return null;
  }
}

/**
 * `POST /api/v1/join` ([crowd], protocol/join.ts). What comes from the joining computer is
 * checked here before anything is stored: the body against JoinRequestSchema, both keys are
 * Ed25519, the volunteer key's signature over the request (so a volunteer identity cannot
 * be claimed by someone without its private key), the code against the invites (by sha256).
 * What the worker gets is decided by the master alone: labels and maxBuilds come from the
 * invite (none and the default under open enrollment), trust is `new` (or the volunteer's).
 * Only the sha256 of the worker's secret is stored; the code is spent, never stored.
 */
export class Enrollment {
  /** Open joins per address, and tries with unknown codes or bad signatures per address. */
  private readonly openJoins: AuthThrottle;
  private readonly badTries: AuthThrottle;

  constructor(
    private readonly store: Store,
    private readonly options: { mode: EnrollmentMode; farmName: string; joinsPerHour: number },
  ) {
    this.openJoins = new AuthThrottle(options.joinsPerHour, HOUR_MS);
    this.badTries = new AuthThrottle(options.joinsPerHour, HOUR_MS);
  }

  get mode(): EnrollmentMode {
    return this.options.mode;
  }

  async join(body: unknown, address: string): Promise<JoinResult> {
    const refuse = (status: number, reason: JoinRefusal | null, error: string): JoinResult => ({ ok: false, status, reason, error });
    const mode = this.options.mode;
    if (mode === 'closed') return refuse(403, 'closed', 'this farm takes no new volunteers now (enrollment: closed)');
    const wait = Math.max(this.badTries.blockedFor(address), 0);
    if (wait > 0) return refuse(429, 'rate-limited', `too many failed joins from ${address}; try again in ${Math.ceil(wait / 1000)}s`);
    const parsed = JoinRequestSchema.safeParse(body);
    if (!parsed.success) return refuse(400, null, `bad join request: ${describeIssues(parsed.error)}`);
    const r: JoinRequest = parsed.data;
    const volunteerKey = ed25519Key(r.volunteerKey);
    if (!volunteerKey) return refuse(400, null, 'volunteerKey: not an Ed25519 public key');
    if (!ed25519Key(r.workerKey)) return refuse(400, null, 'workerKey: not an Ed25519 public key');
    if (!verify(null, Buffer.from(joinSignedText(r)), volunteerKey, Buffer.from(r.volunteerSignature, 'base64'))) {
      this.badTries.fail(address);
      return refuse(400, null, 'volunteerSignature: the signature does not verify with volunteerKey');
    }
    let inviteId: string | null = null;
    let labels: string[] = [];
    let maxBuilds = DEFAULT_TOKEN_MAX_BUILDS;
    let how: string;
    if (r.code !== undefined) {
      const invite = await this.store.getInviteByCodeHash(sha256Hex(r.code));
      if (!invite) {
        this.badTries.fail(address);
        return refuse(404, 'unknown-code', 'this invite code is not known to this farm (copy the whole join link again)');
      }
      inviteId = invite.id;
      labels = invite.labels;
      maxBuilds = invite.maxBuilds;
      how = `joined with invite ${invite.id}${invite.note ? ` (${invite.note})` : ''}`;
    } else {
      if (mode !== 'open') return refuse(403, 'invite-only', 'this farm takes new volunteers by invitation only: the join link needs an invite code');
      const openWait = this.openJoins.blockedFor(address);
      if (openWait > 0) return refuse(429, 'rate-limited', `too many joins from ${address} (enrollment.joinsPerHour); try again in ${Math.ceil(openWait / 1000)}s`);
      this.openJoins.fail(address);
      how = 'joined by open enrollment';
    }
    const at = new Date().toISOString();
    const out = await this.store.enroll({
      inviteId, at, reason: how,
      volunteer: {
        id: `vol-${randomBytes(5).toString('hex')}`, publicKey: r.volunteerKey, displayName: r.displayName, listed: r.listed,
        trust: 'new', trustSource: 'join', streak: 0, createdAt: at,
      },
      token: { name: r.worker, hash: r.tokenHash, labels, maxBuilds, createdAt: at, revokedAt: null, workerKey: r.workerKey },
    });
    if (!out.ok) {
      switch (out.reason) {
        case 'unknown-code': return refuse(404, 'unknown-code', 'this invite code is not known to this farm (copy the whole join link again)');
        case 'used-up': return refuse(410, 'used-up', 'this invite has been used up; ask the maintainer for a new one');
        case 'expired': return refuse(410, 'expired', 'this invite has expired; ask the maintainer for a new one');
        case 'revoked': return refuse(410, 'revoked', 'this invite was revoked by the maintainer');
        case 'banned': return refuse(403, 'banned', 'this volunteer is banned from this farm');
        case 'name-taken': return refuse(409, 'name-taken', `a worker named "${r.worker}" already exists on this farm; choose another name`);
      }
    }
    const v = out.volunteer;
    return {
      ok: true,
      body: { worker: r.worker, volunteer: { id: v.id, displayName: v.displayName, trust: v.trust }, labels, maxBuilds, farm: this.options.farmName },
    };
  }
}
