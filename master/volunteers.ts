import { UNLISTED_VOLUNTEER_LABEL } from '../protocol/api.js';
import type { Store, TokenRow, Trust, TrustSource, VolunteerRow } from './store/store.js';

/**
 * Volunteers and their trust ([crowd]). A volunteer is one join identity (an Ed25519 key),
 * with a display name they chose; it may run several workers (one token each). Trust is
 * `new` on joining, `trusted` when a maintainer promotes it or its record earns it, `banned`.
 * Every change is a trust_events row with its reason.
 *
 * Tokens made by the maintainer with `crowdbake token create` (and latent workers' tokens)
 * have no volunteer: they count as trusted, since the maintainer handed them out, and each
 * is an owner of its own for `verify.owners: distinct`.
 */

export const TRUST_LEVELS: readonly Trust[] = ['new', 'trusted', 'banned'];

/** Who owns a worker, for `verify: { owners: distinct }`: its volunteer, else its token. */
export function ownerOf(token: Pick<TokenRow, 'name' | 'volunteerId'>): string {
  return token.volunteerId ? `volunteer:${token.volunteerId}` : `token:${token.name}`;
}

/** A worker's trust: its volunteer's, or `trusted` for a token the maintainer made. */
export function trustOf(volunteer: VolunteerRow | null): Trust {
  return volunteer ? volunteer.trust : 'trusted';
}

export interface EarnedTrustRules {
  /** Agreeing replicated results in a row that promote a `new` volunteer; 0: never. */
  promoteAfter: number;
  /** Agreeing replicated results in a row after which a volunteer's builds need fewer replicas (fewer-replicas.ts); 0: never. */
  fewerReplicasAfter?: number;
}

export interface ReplicaVerdict {
  buildId: number;
  worker: string;
  verdict: 'verified' | 'disagreed' | 'unverified';
}

export class Volunteers {
  /**
   * Each volunteer's streak and name, kept in memory so the dispatcher can ask `reliable`
   * without waiting on the store: filled by `load`, kept current by this class's own writes.
   * A change made by another process (the CLI) shows after that volunteer's next verdict.
   */
  private readonly known = new Map<string, { streak: number; displayName: string; listed: boolean; trust: Trust }>();

  constructor(private readonly store: Store, private readonly rules: EarnedTrustRules = { promoteAfter: 10 }) {}

  get promoteAfter(): number {
    return this.rules.promoteAfter;
  }

  get fewerReplicasAfter(): number {
    return this.rules.fewerReplicasAfter ?? 0;
  }

  async load(): Promise<void> {
    for (const v of await this.store.listVolunteers()) this.remember(v);
  }

  private remember(v: Pick<VolunteerRow, 'id' | 'streak' | 'displayName' | 'listed' | 'trust'>): void {
    this.known.set(v.id, { streak: v.streak, displayName: v.displayName, listed: v.listed, trust: v.trust });
  }

  /**
   * The volunteer behind `owner` (coordinator's `volunteer:ID`) when its last
   * `fewerReplicasAfter` replicated results all agreed with the majority; else null. Maintainer
   * tokens are not volunteers: they never shorten a group.
   */
  reliable(owner: string | undefined): { id: string; displayName: string; publicName: string; streak: number } | null {
    const k = this.fewerReplicasAfter;
    if (k <= 0 || !owner?.startsWith('volunteer:')) return null;
    const id = owner.slice('volunteer:'.length);
    const v = this.known.get(id);
    // publicName: what a build's (public) message may say — an unlisted volunteer is not named.
    return v && v.trust !== 'banned' && v.streak >= k ? { id, displayName: v.displayName, publicName: v.listed ? v.displayName : UNLISTED_VOLUNTEER_LABEL, streak: v.streak } : null;
  }

  /**
   * A group was shortened for this volunteer: the streak that allowed it is spent, so the next
   * shortened group needs `fewerReplicasAfter` more agreeing results (a spot-check ratio of K
   * checked results to one unchecked). The memory changes now (the dispatcher asks again at
   * once), the store right after.
   */
  spend(id: string): Promise<void> {
    const v = this.known.get(id);
    if (!v) return Promise.resolve();
    const streak = Math.max(0, v.streak - this.fewerReplicasAfter);
    this.known.set(id, { ...v, streak });
    return this.store.setStreak(id, streak);
  }

  /** Finds a volunteer by id, else by display name; throws a sentence when none or several match. */
  async resolve(nameOrId: string): Promise<VolunteerRow> {
    const all = await this.store.listVolunteers();
    const byId = all.find((v) => v.id === nameOrId);
    if (byId) return byId;
    const byName = all.filter((v) => v.displayName === nameOrId);
    if (byName.length === 1) return byName[0]!;
    if (byName.length > 1) throw new Error(`${byName.length} volunteers are named "${nameOrId}" (${byName.map((v) => v.id).join(', ')}); give the id`);
    throw new Error(`no volunteer named "${nameOrId}" (see crowdbake volunteers list)`);
  }

  /** Sets trust (a maintainer's decision unless `source` says otherwise) and records why. */
  async setTrust(id: string, trust: Trust, reason: string, source: TrustSource = 'maintainer'): Promise<VolunteerRow> {
    const v = await this.store.getVolunteer(id);
    if (!v) throw new Error(`no volunteer ${id}`);
    await this.store.setTrust({ volunteerId: id, trust, source, reason, at: new Date().toISOString() });
    const after = (await this.store.getVolunteer(id))!;
    this.remember(after);
    return after;
  }

  /**
   * Earned trust, as BOINC's adaptive replication: each replicated result that agreed with
   * the majority lengthens its volunteer's streak; `promoteAfter` in a row promote a `new`
   * volunteer to `trusted`. One disagreement resets the streak (the worker is flagged by the
   * verdict) and takes back trust that was earned — never trust a maintainer gave.
   * Replicas without a vote (`unverified`) and maintainer tokens change nothing. The same
   * streak, past `fewerReplicasAfter`, lets the volunteer's builds run with fewer replicas
   * (fewer-replicas.ts); a disagreement ends that too.
   */
  async recordVerdicts(verdicts: readonly ReplicaVerdict[]): Promise<void> {
    for (const r of verdicts) {
      if (r.verdict === 'unverified') continue;
      const token = await this.store.getToken(r.worker);
      if (!token?.volunteerId) continue;
      const v = await this.store.getVolunteer(token.volunteerId);
      if (!v || v.trust === 'banned') continue;
      if (r.verdict === 'verified') {
        const streak = v.streak + 1;
        const k = this.rules.promoteAfter;
        if (v.trust === 'new' && k > 0 && streak >= k) {
          await this.setTrust(v.id, 'trusted', `earned: its last ${k} replicated results agreed with the majority (the last: build ${r.buildId} on ${r.worker})`, 'earned');
        } else {
          await this.store.setStreak(v.id, streak);
          this.remember({ ...v, streak });
        }
        continue;
      }
      if (v.trust === 'trusted' && v.trustSource === 'earned') {
        await this.setTrust(v.id, 'new', `earned trust withdrawn: build ${r.buildId} on ${r.worker} disagreed with the majority`, 'earned');
      } else if (v.streak !== 0) {
        await this.store.setStreak(v.id, 0);
      }
      this.remember({ ...v, streak: 0, trust: v.trust === 'trusted' && v.trustSource === 'earned' ? 'new' : v.trust });
    }
  }
}
