import type { BuilderDefinition } from '../protocol/builder-file.js';
import type { Verification } from './verification.js';
import type { Volunteers } from './volunteers.js';

/**
 * [crowd] Earned trust that saves work, as BOINC's adaptive replication: when a replica of a
 * replicated build is given to a worker whose volunteer's last `trust.fewerReplicasAfter`
 * replicated results (crowdbake.yml) all agreed with the majority, the group's replicas still
 * queued are dropped down to the builder's `verify.minReplicas` (never below the members
 * already running). A volunteer's next disagreement resets the streak (volunteers.ts), and
 * their builds are fully replicated again. A group left with one replica is decided by it
 * alone; that verdict serves its artifacts but does not lengthen anyone's streak, and the
 * shortening spends the streak that allowed it (Volunteers.spend): after each unchecked
 * result a volunteer needs K more checked, agreeing ones before the next.
 *
 * Runs on the master, on the master's own records: the streak comes from verdicts the master
 * reached, never from anything a worker says about itself.
 */
export class FewerReplicas {
  constructor(private readonly volunteers: Volunteers, private readonly verification: Verification) {}

  /** After `buildId` was assigned to a worker of `owner`: the queued replicas to drop and why, or null. Synchronous, so the dispatcher drops them before its next pick. */
  assigned(buildId: number, builder: BuilderDefinition, owner: string | undefined): { drop: number[]; why: string } | null {
    const min = builder.verify?.minReplicas;
    if (min === undefined) return null;
    const v = this.volunteers.reliable(owner);
    if (!v) return null;
    const drop = this.verification.droppable(buildId, min);
    if (drop.length === 0) return null;
    const why = `not needed: replica dropped because build ${buildId} went to ${v.publicName}, whose last ${v.streak} replicated results agreed with the majority (trust.fewerReplicasAfter: ${this.volunteers.fewerReplicasAfter}, verify.minReplicas: ${min})`;
    void this.volunteers.spend(v.id).catch((e: Error) => console.error(`crowdbake master: cannot store the streak of ${v.displayName}: ${e.message}`));
    return { drop, why };
  }
}
