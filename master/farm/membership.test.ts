import { test } from 'node:test';
import assert from 'node:assert/strict';
import type { ClaimStore } from '../store/claims.js';
import { FarmMembership } from './membership.js';

/**
 * A stand-in for the claims of a PostgreSQL store (the real one is tested in
 * store/postgres-*.test.ts and test/fault-partition.test.ts): only join and renew, whose
 * answers the test decides — a renewal can hang as one does across a network partition.
 */
class ClaimsStandIn {
  holder = 'none';
  joins: string[] = [];
  renewals: { resolve: (ok: boolean) => void; reject: (e: Error) => void; holder: string }[] = [];
  private n = 0;
  join(): Promise<void> {
    this.holder = `m${++this.n}`;
    this.joins.push(this.holder);
    return Promise.resolve();
  }
  renew(): Promise<boolean> {
    return new Promise((resolve, reject) => this.renewals.push({ resolve, reject, holder: this.holder }));
  }
  leave(): Promise<void> {
    return Promise.resolve();
  }
}

async function until(what: string, check: () => boolean): Promise<void> {
  for (let i = 0; i < 500; i++) {
    if (check()) return;
    await new Promise((r) => setTimeout(r, 10));
  }
  throw new Error(`timed out waiting for ${what}`);
}

function membership(claims: ClaimsStandIn, leaseMs = 300) {
  const lost: string[] = [];
  const ticks: number[] = [];
  const log: string[] = [];
  const m = new FarmMembership(claims as unknown as ClaimStore, {
    leaseMs, url: () => 'http://m', onLost: (why) => lost.push(why), onTick: async () => { ticks.push(Date.now()); }, log: (l) => log.push(l),
  });
  return { m, lost, ticks, log };
}

test('membership: a renewal that hangs (the database cut off) does not keep the master holding: it steps down by its own clock and joins again', async () => {
  const claims = new ClaimsStandIn();
  const { m, lost, log } = membership(claims);
  await m.start();
  assert.deepEqual([m.holder, m.held], ['m1', true]);
  // The first renewal never answers.
  await until('a renewal to be sent', () => claims.renewals.length === 1);
  await until('the master to step down', () => lost.length === 1);
  assert.equal(claims.renewals.length, 1, 'stepped down while the renewal still hung, without waiting for it');
  assert.equal(lost[0], 'master m1 lost its lease');
  assert.match(log.join('\n'), /lost this master's lease \(m1: no renewal of this master's lease for \d+\.\ds \(the database unreachable\)\)/);
  await until('it to join again', () => m.held);
  assert.deepEqual([m.holder, m.losses], ['m2', 1]);
  // The hung renewal of the old id answers at last (the partition healed): it is not acted on.
  claims.renewals[0]!.resolve(false);
  await until('the next renewal, of the new id', () => claims.renewals.length === 2);
  assert.equal(claims.renewals[1]!.holder, 'm2');
  assert.deepEqual([m.losses, lost.length, claims.joins], [1, 1, ['m1', 'm2']], 'the old answer caused no second step-down');
  claims.renewals[1]!.resolve(true);
  await m.close(0);
});

test('membership: a renewal that finds the lease ran out steps down once; renewals that succeed keep it (and run the tick)', async () => {
  const claims = new ClaimsStandIn();
  const { m, lost, ticks } = membership(claims, 3000);
  await m.start();
  for (let i = 0; i < 3; i++) {
    await until(`renewal ${i + 1}`, () => claims.renewals.length === i + 1);
    claims.renewals[i]!.resolve(true);
    await until(`tick ${i + 1}`, () => ticks.length === i + 1);
  }
  assert.deepEqual([lost.length, m.losses, m.holder], [0, 0, 'm1'], 'answered renewals keep the lease: the watchdog never fired');
  await until('renewal 4', () => claims.renewals.length === 4);
  claims.renewals[3]!.resolve(false);
  await until('the step-down', () => lost.length === 1);
  await until('it to join again', () => m.held);
  assert.deepEqual([m.holder, m.losses, ticks.length], ['m2', 1, 3]);
  await m.close(0);
});

test('membership: renewals that fail (refused connections) are logged; without one succeeding for two thirds of the lease it steps down', async () => {
  const claims = new ClaimsStandIn();
  const { m, lost, log } = membership(claims, 3000);
  await m.start();
  await until('a renewal', () => claims.renewals.length === 1);
  claims.renewals[0]!.reject(new Error('connect ECONNREFUSED'));
  await until('the failure to be logged', () => log.some((l) => l === 'cannot renew this master\'s lease: connect ECONNREFUSED'));
  assert.equal(m.held, true, 'one failed renewal is not yet a lost lease');
  await until('the step-down', () => lost.length === 1);
  await until('it to join again', () => m.held);
  assert.equal(m.holder, 'm2');
  await m.close(0);
});
