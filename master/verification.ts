import type { BuildOutcome, Verdict, VerificationView } from '../protocol/api.js';
import type { BuildRow, NewBuild, Store, WorkerFlagRow } from './store/store.js';
import { ownerOf, type ReplicaVerdict } from './volunteers.js';
import { log } from './log.js';

/** One replica as the verdict sees it: who built it, how it ended, what it made. */
export interface ReplicaOutcome {
  id: number;
  worker: string | null;
  result: BuildOutcome | null;
  artifacts: { name: string; sha256: string }[];
}

export interface Decision {
  verdicts: Map<number, { verdict: Exclude<Verdict, 'pending'>; detail: string }>;
  flags: Omit<WorkerFlagRow, 'at'>[];
}

const short = (sha: string) => sha.slice(0, 12);
const fingerprint = (r: ReplicaOutcome) => [...r.artifacts].sort((a, b) => (a.name < b.name ? -1 : 1)).map((a) => `${a.name}=${a.sha256}`).join('\n');
const who = (r: ReplicaOutcome) => `build ${r.id} on ${r.worker ?? 'an unknown worker'}`;

/** How two replicas' artifacts differ, as a short sentence: names and sha256 prefixes. */
function difference(mine: ReplicaOutcome, theirs: ReplicaOutcome): string {
  const a = new Map(mine.artifacts.map((x) => [x.name, x.sha256]));
  const b = new Map(theirs.artifacts.map((x) => [x.name, x.sha256]));
  const parts: string[] = [];
  for (const name of [...new Set([...a.keys(), ...b.keys()])].sort()) {
    const x = a.get(name);
    const y = b.get(name);
    if (x === y) continue;
    parts.push(`${name}: ${x ? `sha256 ${short(x)}…` : 'missing'} vs ${y ? `sha256 ${short(y)}…` : 'missing'} from ${who(theirs)}`);
  }
  return parts.join('; ');
}

/**
 * The quorum rule (as BOINC's): a result is accepted when more than half of the replicas
 * succeeded with byte-identical artifacts (same names, same sha256). Those replicas are
 * `verified`; a replica that succeeded with other bytes is `disagreed` and its worker is
 * flagged; one that did not succeed does not vote (`unverified`). Without a majority, every
 * successful replica is `disagreed` (all flagged) when they differ, else `unverified`.
 */
export function decide(replicas: ReplicaOutcome[]): Decision {
  const n = replicas.length;
  const quorum = Math.floor(n / 2) + 1;
  const votes = new Map<string, ReplicaOutcome[]>();
  for (const r of replicas) {
    if (r.result !== 'success') continue;
    const key = fingerprint(r);
    votes.set(key, [...(votes.get(key) ?? []), r]);
  }
  const winner = [...votes.values()].find((v) => v.length >= quorum) ?? null;
  const succeeded = [...votes.values()].flat();
  const out: Decision = { verdicts: new Map(), flags: [] };
  for (const r of replicas) {
    if (r.result !== 'success') {
      out.verdicts.set(r.id, { verdict: 'unverified', detail: `this replica ended ${r.result ?? 'without a result'}; it does not vote` });
      continue;
    }
    if (winner) {
      if (winner.includes(r)) {
        out.verdicts.set(r.id, { verdict: 'verified', detail: `${winner.length} of ${n} replicas made identical artifacts` });
      } else {
        const detail = `its artifacts differ from the majority's (${winner.length} of ${n}): ${difference(r, winner[0]!)}`;
        out.verdicts.set(r.id, { verdict: 'disagreed', detail });
        if (r.worker) out.flags.push({ worker: r.worker, buildId: r.id, reason: `build ${r.id}: ${detail}` });
      }
      continue;
    }
    const others = succeeded.filter((o) => fingerprint(o) !== fingerprint(r));
    if (others.length === 0) {
      out.verdicts.set(r.id, {
        verdict: 'unverified',
        detail: `only ${succeeded.length} of ${n} replicas succeeded; ${quorum} identical results are needed`,
      });
      continue;
    }
    const detail = `replicas disagree and none has a majority of ${quorum}: ${others.map((o) => difference(r, o)).join('; ')}`;
    out.verdicts.set(r.id, { verdict: 'disagreed', detail });
    if (r.worker) out.flags.push({ worker: r.worker, buildId: r.id, reason: `build ${r.id}: ${detail}` });
  }
  return out;
}

/**
 * Result verification for builders with `verify: { replicas: N }`: each build requested is
 * stored with N-1 replicas (one transaction), no two of which run on the same worker; when
 * the last of them finishes, `decide` gives each its verdict and flags the workers that
 * disagreed. Artifacts of a replicated build are served only once it is `verified`.
 *
 * The coordinator calls `createGroup` instead of inserting a build, `excluded` when picking
 * a worker, `assigned` when a replica gets (or loses) a worker, and `finished` after
 * storing a replica's end. Pending groups live in memory and are reloaded by `load` at start.
 */
export class Verification {
  /** Undecided groups: group id -> member id -> the worker it runs or ran on (null while queued). */
  private readonly groups = new Map<number, Map<number, string | null>>();
  private readonly finishedIn = new Map<number, Set<number>>();
  private readonly groupOf = new Map<number, number>();
  /** Who owns the worker each member runs or ran on (volunteer or token), for `owners: distinct`. */
  private readonly ownerOfBuild = new Map<number, string>();

  constructor(
    private readonly store: Store,
    private readonly onDecided: (buildIds: number[]) => void = () => undefined,
    /** Each decided replica's verdict, with its worker ([crowd]: earned trust, credit). */
    private readonly onVerdicts: (verdicts: ReplicaVerdict[]) => Promise<void> = async () => undefined,
  ) {}

  /** Reloads undecided groups after a restart. */
  async load(): Promise<void> {
    for (const v of await this.store.listPendingVerifications()) {
      const row = await this.store.getBuild(v.buildId);
      const worker = row?.state === 'queued' ? null : row?.worker ?? null;
      this.track(v.groupId, v.buildId, worker);
      if (worker) this.ownerOfBuild.set(v.buildId, ownerOf((await this.store.getToken(worker)) ?? { name: worker, volunteerId: null }));
      if (row?.state === 'finished') this.finishedIn.get(v.groupId)!.add(v.buildId);
    }
    // A group whose last replica finished just before a crash is decided now.
    for (const [group, members] of [...this.groups]) {
      if (this.finishedIn.get(group)!.size === members.size) await this.decideGroup(group);
    }
  }

  private track(group: number, id: number, worker: string | null): void {
    if (!this.groups.has(group)) { this.groups.set(group, new Map()); this.finishedIn.set(group, new Set()); }
    this.groups.get(group)!.set(id, worker);
    this.groupOf.set(id, group);
  }

  /** Stores the build asked for and its replicas; the first row returned is the build asked for. */
  async createGroup(build: NewBuild, replicas: number): Promise<BuildRow[]> {
    const rows: NewBuild[] = [build];
    for (let k = 2; k <= replicas; k++) rows.push({ ...build, reason: `${build.reason ? `${build.reason}; ` : ''}replica ${k} of ${replicas}` });
    const out = await this.store.insertBuildGroup(rows);
    for (const r of out) this.track(out[0]!.id, r.id, null);
    return out;
  }

  /** Workers this build must not run on: those that run or ran its other replicas. */
  excluded(buildId: number): ReadonlySet<string> | undefined {
    const group = this.groupOf.get(buildId);
    if (group === undefined) return undefined;
    const out = new Set<string>();
    for (const [id, worker] of this.groups.get(group)!) if (id !== buildId && worker) out.add(worker);
    return out;
  }

  /**
   * Owners (volunteers, or maintainer tokens) this build must not run on under
   * `verify.owners: distinct`: those whose workers run or ran its other replicas, so one
   * person with several machines cannot make a majority alone.
   */
  excludedOwners(buildId: number): ReadonlySet<string> | undefined {
    const group = this.groupOf.get(buildId);
    if (group === undefined) return undefined;
    const out = new Set<string>();
    for (const [id, worker] of this.groups.get(group)!) {
      const owner = this.ownerOfBuild.get(id);
      if (id !== buildId && worker && owner) out.add(owner);
    }
    return out;
  }

  assigned(buildId: number, worker: string | null, owner?: string): void {
    const group = this.groupOf.get(buildId);
    if (group === undefined) return;
    this.groups.get(group)!.set(buildId, worker);
    if (worker && owner) this.ownerOfBuild.set(buildId, owner);
    else this.ownerOfBuild.delete(buildId);
  }

  /**
   * [crowd] Fewer replicas (fewer-replicas.ts): the queued members of `buildId`'s group that
   * can go while keeping at least `min` members and every member already on a worker;
   * newest first.
   */
  droppable(buildId: number, min: number): number[] {
    const group = this.groupOf.get(buildId);
    if (group === undefined) return [];
    const members = this.groups.get(group)!;
    const queued = [...members].filter(([id, worker]) => id !== buildId && worker === null).map(([id]) => id).sort((a, b) => b - a);
    const keep = Math.max(min, members.size - queued.length);
    return queued.slice(0, Math.max(0, members.size - keep));
  }

  /**
   * Takes a queued member out of its group (the coordinator has taken it out of the queue and
   * finishes it): the group is decided by the others, and the member's own verdict is
   * `unverified` with `detail`, so a restart does not count it back in.
   */
  async drop(buildId: number, detail: string): Promise<void> {
    const group = this.groupOf.get(buildId);
    if (group === undefined) return;
    this.groups.get(group)!.delete(buildId);
    this.groupOf.delete(buildId);
    this.ownerOfBuild.delete(buildId);
    await this.store.setVerdict(buildId, 'unverified', detail);
    // The others may all have finished already.
    if (this.finishedIn.get(group)!.size === this.groups.get(group)!.size) await this.decideGroup(group);
  }

  /** A replica has ended (its row is stored): when it was the last of its group, decide. */
  async finished(row: BuildRow): Promise<void> {
    const group = this.groupOf.get(row.id);
    if (group === undefined) return;
    const done = this.finishedIn.get(group)!;
    done.add(row.id);
    if (done.size === this.groups.get(group)!.size) await this.decideGroup(group);
  }

  private async decideGroup(group: number): Promise<void> {
    const members = [...this.groups.get(group)!.keys()];
    this.groups.delete(group);
    this.finishedIn.delete(group);
    for (const id of members) { this.groupOf.delete(id); this.ownerOfBuild.delete(id); }
    const outcomes: ReplicaOutcome[] = [];
    for (const id of members) {
      const row = await this.store.getBuild(id);
      const artifacts = await this.store.listArtifacts(id);
      outcomes.push({ id, worker: row?.worker ?? null, result: row?.result ?? null, artifacts });
    }
    const d = decide(outcomes);
    const at = new Date().toISOString();
    for (const [id, v] of d.verdicts) await this.store.setVerdict(id, v.verdict, v.detail);
    for (const f of d.flags) await this.store.flagWorker({ ...f, at });
    this.onDecided(members);
    const verdicts: ReplicaVerdict[] = [];
    // A group shortened to one replica (fewer replicas) agreed with no one: its verdict lets its
    // artifacts out, but it is no evidence for anyone's streak or credit.
    if (outcomes.length < 2) return;
    for (const o of outcomes) {
      const v = d.verdicts.get(o.id);
      if (o.worker && v) verdicts.push({ buildId: o.id, worker: o.worker, verdict: v.verdict });
    }
    await this.onVerdicts(verdicts).catch((e: Error) => log.error(`after the verdict of group ${group}: ${e.message}`));
  }

  /** The verification part of a build's REST view, or null for a build without replicas. */
  async viewOf(buildId: number): Promise<VerificationView | null> {
    const own = await this.store.getVerification(buildId);
    if (!own) return null;
    const rows = await this.store.listVerifications(own.groupId);
    const members = await Promise.all(rows.map(async (v) => ({ id: v.buildId, worker: (await this.store.getBuild(v.buildId))?.worker ?? null, verdict: v.verdict })));
    return { group: own.groupId, replicas: own.replicas, verdict: own.verdict, detail: own.detail, members };
  }

  /** Why a build's artifacts may not be handed out (not verified), or null when they may. */
  async withheld(buildId: number): Promise<string | null> {
    const own = await this.store.getVerification(buildId);
    if (!own || own.verdict === 'verified') return null;
    if (own.verdict === 'pending') return `build ${buildId}'s artifacts are not verified yet: waiting for its ${own.replicas - 1} replica(s) to finish`;
    return `build ${buildId}'s artifacts are ${own.verdict}: ${own.detail ?? 'no majority of workers made the same bytes'}`;
  }
}
