import { describe, test, type TestContext } from 'node:test';
import assert from 'node:assert/strict';
import { MIGRATIONS } from './migrations.js';
import type { BuildRow, Enrollment, InviteRow, NewBuild, Store, TokenRow, VolunteerRow } from './store.js';

/**
 * One place holding a store's data: a SQLite file, a PostgreSQL database. Several stores may
 * be open on it at once, as several masters (or a master and `crowdbake token`) would be.
 */
export interface StoreStorage {
  open(): Promise<Store>;
  /** The schema version recorded in the storage, read behind the store's back. */
  schemaVersion(): Promise<number>;
  /** Overwrites the recorded schema version, as a newer Crowdbake would have left it. */
  setSchemaVersion(version: number): Promise<void>;
}

/** Makes new, empty storage for each test; the test file removes it all afterwards. */
export type StorageFactory = () => Promise<StoreStorage>;

const T0 = Date.UTC(2026, 0, 1);
const at = (s: number) => new Date(T0 + s * 1000).toISOString();
const newBuild = (builder: string, s = 0): NewBuild => ({ builder, revision: null, reason: null, queuedAt: at(s) });
const token = (name: string, labels: string[] = [], maxBuilds = 4): TokenRow => ({
  name, hash: `h-${name}`, labels, maxBuilds, createdAt: at(0), revokedAt: null, volunteerId: null, workerKey: null,
});
const invite = (id: string, o: Partial<InviteRow> = {}): InviteRow => ({
  id, codeHash: `c-${id}`, labels: ['gpu'], maxBuilds: 2, maxUses: 2, usesLeft: 2, expiresAt: null, note: 'n', createdAt: at(0), revokedAt: null, ...o,
});
const volunteer = (id: string, key = `k-${id}`): VolunteerRow => ({
  id, publicKey: key, displayName: `V ${id}`, listed: true, trust: 'new', trustSource: 'join', streak: 0, createdAt: at(0),
});
const enrollment = (worker: string, v: VolunteerRow, inviteId: string | null, s = 1): Enrollment => ({
  inviteId, at: at(s), volunteer: v, reason: 'joined', token: { ...token(worker, ['gpu'], 2), workerKey: `wk-${worker}` },
});

/**
 * Registers the Store contract as node:test tests against one implementation. Every test
 * gets fresh storage; the stores a test opens are closed when it ends.
 */
export function storeSuite(name: string, fresh: StorageFactory): void {
  /** Fresh storage and a store open on it, closed at the end of the test. */
  async function setup(t: TestContext): Promise<{ storage: StoreStorage; s: Store; open: () => Promise<Store> }> {
    const storage = await fresh();
    const open = async () => {
      const s = await storage.open();
      t.after(() => s.close());
      return s;
    };
    return { storage, s: await open(), open };
  }

  describe(`Store contract: ${name}`, () => {
    test('a new store is empty and records the current schema version', async (t) => {
      const { storage, s } = await setup(t);
      assert.equal(await storage.schemaVersion(), MIGRATIONS.length);
      assert.deepEqual(await s.listTokens(), []);
      assert.deepEqual(await s.listWorkers(), []);
      assert.deepEqual(await s.listBuilds({ limit: 10 }), []);
      assert.deepEqual(await s.listUnfinishedBuilds(), []);
      assert.deepEqual(await s.listSteps([]), []);
      assert.deepEqual(await s.listSteps([1, 2]), []);
      assert.deepEqual(await s.listArtifacts(1), []);
      assert.equal(await s.getBuild(1), null);
      assert.equal(await s.getToken('nobody'), null);
    });

    test('tokens: stored as given, listed by name bytewise, names unique with a clear error', async (t) => {
      const { s } = await setup(t);
      await s.createToken(token('w1', ['linux', 'big']));
      await s.createToken({ ...token('old'), revokedAt: at(5) });
      for (const n of ['b', 'B', '_x', 'a-1']) await s.createToken(token(n));
      await assert.rejects(s.createToken({ ...token('w1'), hash: 'other' }), { message: 'a token named "w1" already exists' });
      assert.deepEqual(await s.getToken('w1'), token('w1', ['linux', 'big']));
      assert.equal((await s.getToken('old'))?.revokedAt, at(5));
      assert.deepEqual((await s.listTokens()).map((x) => x.name), ['B', '_x', 'a-1', 'b', 'old', 'w1']);
      assert.deepEqual(await s.listRevokedTokenNames(), ['old']);
      assert.equal(await s.revokeToken('b', at(6)), true);
      assert.deepEqual((await s.listRevokedTokenNames()).sort(), ['b', 'old']);
    });

    test('tokens: the builds at once the admin granted are kept with the token', async (t) => {
      const { s } = await setup(t);
      await s.createToken(token('one', [], 1));
      await s.createToken(token('many', ['x'], 64));
      assert.deepEqual(await s.getToken('one'), token('one', [], 1));
      assert.deepEqual((await s.listTokens()).map((x) => [x.name, x.maxBuilds]), [['many', 64], ['one', 1]]);
    });

    test('tokens: revocation happens once and keeps its time', async (t) => {
      const { s } = await setup(t);
      await s.createToken(token('w1'));
      assert.equal(await s.revokeToken('w1', at(1)), true);
      assert.equal(await s.revokeToken('w1', at(2)), false);
      assert.equal(await s.revokeToken('nobody', at(3)), false);
      assert.equal((await s.getToken('w1'))?.revokedAt, at(1));
    });

    test('tokens: a worker key is replaced or removed on an active token only ([provenance] rotation, revocation)', async (t) => {
      const { s } = await setup(t);
      await s.createToken({ ...token('w1'), workerKey: 'old' });
      assert.equal(await s.setWorkerKey('w1', 'new'), true);
      assert.equal((await s.getToken('w1'))?.workerKey, 'new');
      assert.equal(await s.setWorkerKey('w1', null), true);
      assert.equal((await s.getToken('w1'))?.workerKey ?? null, null);
      assert.equal(await s.setWorkerKey('nobody', 'k'), false);
      await s.revokeToken('w1', at(1));
      assert.equal(await s.setWorkerKey('w1', 'again'), false);
    });

    test('[cloud] one-time tokens: spent once, never when expired, revoked or an ordinary token; racing spends: one wins', async (t) => {
      const { s } = await setup(t);
      await s.createToken({ ...token('once'), oneTime: true, expiresAt: at(10) });
      await s.createToken({ ...token('stale'), oneTime: true, expiresAt: at(2) });
      await s.createToken({ ...token('plain') });
      await s.createToken({ ...token('gone'), oneTime: true, expiresAt: at(10), revokedAt: at(1) });
      assert.deepEqual(await s.getToken('once'), { ...token('once'), oneTime: true, expiresAt: at(10), usedAt: null });
      assert.equal(await s.useOneTimeToken('stale', at(3)), false, 'expired');
      assert.equal(await s.useOneTimeToken('plain', at(3)), false, 'not one-time');
      assert.equal(await s.useOneTimeToken('gone', at(3)), false, 'revoked');
      assert.equal(await s.useOneTimeToken('nobody', at(3)), false);
      const spends = await Promise.all([1, 2, 3, 4].map(() => s.useOneTimeToken('once', at(3))));
      assert.deepEqual(spends.filter(Boolean).length, 1);
      assert.equal((await s.getToken('once'))?.usedAt, at(3));
      assert.equal(await s.useOneTimeToken('once', at(4)), false);
      assert.equal((await s.getToken('plain'))?.oneTime, undefined);
    });

    test('[cloud] cloud usage: instance time added per provisioner and day, listed from a day on', async (t) => {
      const { s } = await setup(t);
      await s.addCloudUsage('burst', '2026-11-30', 1000);
      await s.addCloudUsage('burst', '2026-12-01', 1500);
      await s.addCloudUsage('burst', '2026-12-01', 2500);
      await s.addCloudUsage('other', '2026-12-01', 7);
      assert.deepEqual(await s.listCloudUsage('burst', '2026-12-01'), [{ day: '2026-12-01', instanceMs: 4000 }]);
      assert.deepEqual(await s.listCloudUsage('burst', '2026-11-01'), [{ day: '2026-11-30', instanceMs: 1000 }, { day: '2026-12-01', instanceMs: 4000 }]);
      assert.deepEqual(await s.listCloudUsage('other', '2026-01-01'), [{ day: '2026-12-01', instanceMs: 7 }]);
    });

    test('workers: upserted by name, listed by name', async (t) => {
      const { s } = await setup(t);
      await s.upsertWorker({ name: 'w2', capabilities: '{"cpus":2}', lastSeenAt: at(1) });
      await s.upsertWorker({ name: 'w1', capabilities: '{"cpus":1}', lastSeenAt: at(2) });
      await s.upsertWorker({ name: 'w2', capabilities: '{"cpus":8}', lastSeenAt: at(3) });
      assert.deepEqual(await s.listWorkers(), [
        { name: 'w1', capabilities: '{"cpus":1}', lastSeenAt: at(2) },
        { name: 'w2', capabilities: '{"cpus":8}', lastSeenAt: at(3) },
      ]);
    });

    test('builds: insert returns the queued row; updates patch only the fields given', async (t) => {
      const { s } = await setup(t);
      const a = await s.insertBuild({ builder: 'hello', revision: 'abc', reason: 'test', queuedAt: at(0) });
      const expected: BuildRow = {
        id: a.id, builder: 'hello', revision: 'abc', reason: 'test', queuedAt: at(0), state: 'queued', result: null,
        worker: null, attempt: 0, message: null, startedAt: null, finishedAt: null,
        branch: null, trigger: 'force', rebuildOf: null, supersededBy: null,
      };
      assert.deepEqual(a, expected);
      assert.ok(Number.isInteger(a.id) && a.id > 0);
      const b = await s.insertBuild(newBuild('hello', 1));
      assert.ok(b.id > a.id, 'ids increase');
      await s.updateBuild(a.id, { state: 'running', worker: 'w1', attempt: 1, startedAt: at(2) });
      await s.updateBuild(a.id, {});
      assert.deepEqual(await s.getBuild(a.id), { ...expected, state: 'running', worker: 'w1', attempt: 1, startedAt: at(2) });
      await s.updateBuild(a.id, { state: 'queued', worker: null, startedAt: null, message: 'lost' });
      await s.updateBuild(a.id, { state: 'finished', result: 'failure', finishedAt: at(3) });
      assert.deepEqual(await s.getBuild(a.id), { ...expected, state: 'finished', result: 'failure', attempt: 1, message: 'lost', finishedAt: at(3) });
      assert.deepEqual(await s.getBuild(b.id), { ...expected, id: b.id, revision: null, reason: null, queuedAt: at(1) });
      // A build asked for without a revision gets the commit its worker checked out.
      await s.updateBuild(b.id, { revision: 'c'.repeat(40) });
      assert.equal((await s.getBuild(b.id))?.revision, 'c'.repeat(40));
      await s.updateBuild(9_999_999, { state: 'running' });
      assert.equal(await s.getBuild(9_999_999), null);
    });

    test('builds: branch, trigger and the rebuild and superseded links are kept', async (t) => {
      const { s } = await setup(t);
      const a = await s.insertBuild({ builder: 'hello', revision: 'abc', reason: 'new commit on release-1', queuedAt: at(0), branch: 'release-1', trigger: 'change' });
      const b = await s.insertBuild({ builder: 'hello', revision: 'def', reason: null, queuedAt: at(1), branch: 'release-1', trigger: 'change' });
      const r = await s.insertBuild({ builder: 'hello', revision: 'def', reason: 'rebuild', queuedAt: at(2), branch: 'release-1', trigger: 'rebuild', rebuildOf: b.id });
      assert.deepEqual([a.branch, a.trigger, a.rebuildOf, a.supersededBy], ['release-1', 'change', null, null]);
      assert.deepEqual([r.trigger, r.rebuildOf], ['rebuild', b.id]);
      await s.updateBuild(a.id, { state: 'finished', result: 'superseded', supersededBy: b.id, finishedAt: at(3) });
      const got = await s.getBuild(a.id);
      assert.deepEqual([got?.result, got?.supersededBy, got?.branch], ['superseded', b.id, 'release-1']);
      assert.deepEqual((await s.getBuild(r.id))?.rebuildOf, b.id);
    });

    test('listBuilds: newest first, filters by builder and state, pages with beforeId', async (t) => {
      const { s } = await setup(t);
      const ids: number[] = [];
      for (let i = 0; i < 12; i++) ids.push((await s.insertBuild(newBuild(i % 3 === 0 ? 'a' : 'b', i))).id);
      for (const id of ids.slice(0, 6)) await s.updateBuild(id, { state: 'finished', result: 'success' });
      await s.updateBuild(ids[6]!, { state: 'running' });
      const of = (rows: BuildRow[]) => rows.map((r) => ids.indexOf(r.id));
      assert.deepEqual(of(await s.listBuilds({ limit: 100 })), [11, 10, 9, 8, 7, 6, 5, 4, 3, 2, 1, 0]);
      assert.deepEqual(of(await s.listBuilds({ limit: 3 })), [11, 10, 9]);
      assert.deepEqual(of(await s.listBuilds({ limit: 100, builder: 'a' })), [9, 6, 3, 0]);
      assert.deepEqual(of(await s.listBuilds({ limit: 100, state: 'finished' })), [5, 4, 3, 2, 1, 0]);
      assert.deepEqual(of(await s.listBuilds({ limit: 100, state: 'running' })), [6]);
      assert.deepEqual(of(await s.listBuilds({ limit: 100, builder: 'a', state: 'queued' })), [9]);
      assert.deepEqual(of(await s.listBuilds({ limit: 2, builder: 'b', beforeId: ids[8]! })), [7, 5]);
      assert.deepEqual(await s.listBuilds({ limit: 100, builder: 'nobody' }), []);
      const pages: number[][] = [];
      for (let before: number | undefined; ;) {
        const page = await s.listBuilds({ limit: 5, ...(before === undefined ? {} : { beforeId: before }) });
        if (page.length === 0) break;
        pages.push(of(page));
        before = page.at(-1)!.id;
      }
      assert.deepEqual(pages, [[11, 10, 9, 8, 7], [6, 5, 4, 3, 2], [1, 0]]);
    });

    test('listUnfinishedBuilds: queued, running and frozen ones, oldest first', async (t) => {
      const { s } = await setup(t);
      const [a, b, c, d] = [await s.insertBuild(newBuild('x')), await s.insertBuild(newBuild('x')), await s.insertBuild(newBuild('x')), await s.insertBuild(newBuild('x'))];
      await s.updateBuild(a.id, { state: 'frozen' });
      await s.updateBuild(b.id, { state: 'finished', result: 'cancelled' });
      await s.updateBuild(d.id, { state: 'running', worker: 'w' });
      assert.deepEqual((await s.listUnfinishedBuilds()).map((r) => [r.id, r.state]), [[a.id, 'frozen'], [c.id, 'queued'], [d.id, 'running']]);
    });

    test('steps: upserted by build and index, listed for several builds, cleared per build', async (t) => {
      const { s } = await setup(t);
      const a = await s.insertBuild(newBuild('x'));
      const b = await s.insertBuild(newBuild('x'));
      await s.putStep({ buildId: a.id, index: 1, name: 'test', state: 'pending', result: null, exitCode: null });
      await s.putStep({ buildId: a.id, index: 0, name: 'build', state: 'running', result: null, exitCode: null });
      await s.putStep({ buildId: b.id, index: 0, name: 'only', state: 'finished', result: 'success', exitCode: 0 });
      await s.putStep({ buildId: a.id, index: 0, name: 'build', state: 'finished', result: 'failure', exitCode: 2 });
      assert.deepEqual(await s.listSteps([b.id, a.id]), [
        { buildId: a.id, index: 0, name: 'build', state: 'finished', result: 'failure', exitCode: 2 },
        { buildId: a.id, index: 1, name: 'test', state: 'pending', result: null, exitCode: null },
        { buildId: b.id, index: 0, name: 'only', state: 'finished', result: 'success', exitCode: 0 },
      ]);
      assert.deepEqual((await s.listSteps([b.id])).map((x) => x.name), ['only']);
      await s.clearSteps(a.id);
      assert.deepEqual(await s.listSteps([a.id]), []);
      assert.equal((await s.listSteps([a.id, b.id])).length, 1);
    });

    test('artifacts: upserted by build and name, listed by name, sizes past 4 GiB', async (t) => {
      const { s } = await setup(t);
      const a = await s.insertBuild(newBuild('x'));
      const big = 5 * 1024 ** 3 + 7;
      await s.putArtifact({ buildId: a.id, name: 'z.tar', size: 3, sha256: 'a'.repeat(64), worker: 'w1' });
      await s.putArtifact({ buildId: a.id, name: 'B.img', size: big, sha256: 'b'.repeat(64), worker: null });
      await s.putArtifact({ buildId: a.id, name: 'z.tar', size: 4, sha256: 'c'.repeat(64), worker: 'w2' });
      assert.deepEqual(await s.listArtifacts(a.id), [
        { buildId: a.id, name: 'B.img', size: big, sha256: 'b'.repeat(64), worker: null, attempt: 0 },
        { buildId: a.id, name: 'z.tar', size: 4, sha256: 'c'.repeat(64), worker: 'w2', attempt: 0 },
      ]);
      assert.deepEqual(await s.listArtifacts(a.id + 1), []);
    });

    test('artifacts belong to an attempt: only the current attempt\'s are listed; a requeue drops them all, a refusal its attempt\'s', async (t) => {
      const { s } = await setup(t);
      const b = await s.insertBuild(newBuild('x'));
      const other = await s.insertBuild(newBuild('x'));
      const art = (name: string, worker: string) => ({ buildId: b.id, name, size: 1, sha256: 'a'.repeat(64), worker });
      await s.updateBuild(b.id, { state: 'running', worker: 'w1', attempt: 1 });
      await s.putArtifact(art('only-in-1.txt', 'w1'));
      await s.putArtifact(art('out.txt', 'w1'));
      await s.putArtifact({ ...art('kept.txt', 'w9'), buildId: other.id });
      assert.deepEqual((await s.listArtifacts(b.id)).map((x) => [x.name, x.attempt]), [['only-in-1.txt', 1], ['out.txt', 1]]);
      // Requeued (worker lost, expelled): no attempt is accepted, so nothing is listed, and nothing of another build goes.
      await s.updateBuild(b.id, { state: 'queued', worker: null, startedAt: null, message: 'lost' });
      assert.deepEqual(await s.listArtifacts(b.id), []);
      assert.equal((await s.listArtifacts(other.id)).length, 1);
      // Attempt 2 uploads only out.txt: attempt 1's only-in-1.txt is not named, even were its row back.
      await s.updateBuild(b.id, { state: 'running', worker: 'w2', attempt: 2 });
      await s.putArtifact(art('out.txt', 'w2'));
      await s.putArtifact({ ...art('stale.txt', 'w1'), attempt: 1 });
      assert.deepEqual((await s.listArtifacts(b.id)).map((x) => [x.name, x.worker, x.attempt]), [['out.txt', 'w2', 2]]);
      // Attempt 2 refused at its end: its rows go, and the build lists nothing.
      await s.deleteArtifacts(b.id, 2);
      assert.deepEqual(await s.listArtifacts(b.id), []);
    });

    test('writes fired without awaiting are applied in call order, and a later read sees them all', async (t) => {
      const { s } = await setup(t);
      const row = await s.insertBuild(newBuild('x'));
      const pending: Promise<unknown>[] = [];
      for (let i = 0; i < 200; i++) {
        // As Coordinator.assign does: no await between the calls.
        if (i === 100) pending.push(s.clearSteps(row.id));
        pending.push(i % 2 === 0
          ? s.updateBuild(row.id, { attempt: i, message: `write ${i}` })
          : s.putStep({ buildId: row.id, index: i % 7, name: `step ${i}`, state: 'running', result: null, exitCode: i }));
      }
      const [got, steps] = await Promise.all([s.getBuild(row.id), s.listSteps([row.id])]);
      assert.equal(got?.attempt, 198);
      assert.equal(got?.message, 'write 198');
      // After the clear at 100, each index holds its last odd write from 101..199.
      const last = new Map<number, number>();
      for (let i = 101; i < 200; i += 2) last.set(i % 7, i);
      assert.deepEqual(steps.map((x) => [x.index, x.exitCode]), [...last].sort((p, q) => p[0] - q[0]));
      await Promise.all(pending);
    });

    test('everything survives closing and reopening; ids keep increasing', async (t) => {
      const { s, open } = await setup(t);
      await s.createToken(token('w1', ['a']));
      await s.upsertWorker({ name: 'w1', capabilities: '{}', lastSeenAt: at(1) });
      const a = await s.insertBuild(newBuild('x'));
      await s.updateBuild(a.id, { state: 'running', worker: 'w1', attempt: 1 });
      await s.putStep({ buildId: a.id, index: 0, name: 'build', state: 'running', result: null, exitCode: null });
      await s.putArtifact({ buildId: a.id, name: 'out', size: 1, sha256: 'f'.repeat(64), worker: 'w1' });
      void s.updateBuild(a.id, { message: 'written just before close' });
      await s.close();
      await s.close();
      await assert.rejects(s.getBuild(a.id));

      const r = await open();
      assert.deepEqual(await r.getToken('w1'), token('w1', ['a']));
      assert.deepEqual((await r.listWorkers()).map((w) => w.name), ['w1']);
      assert.deepEqual(await r.getBuild(a.id), { ...a, state: 'running', worker: 'w1', attempt: 1, message: 'written just before close' });
      assert.equal((await r.listSteps([a.id])).length, 1);
      assert.equal((await r.listArtifacts(a.id)).length, 1);
      assert.deepEqual((await r.listUnfinishedBuilds()).map((b) => b.id), [a.id]);
      assert.ok((await r.insertBuild(newBuild('x'))).id > a.id);
    });

    test('two stores on one storage (two masters): ids never collide, a token name is taken once', async (t) => {
      const { s, open } = await setup(t);
      const other = await open();
      const made = await Promise.all(Array.from({ length: 40 }, (_, i) => (i % 2 ? s : other).insertBuild(newBuild('x', i))));
      const ids = made.map((b) => b.id);
      assert.equal(new Set(ids).size, ids.length);
      assert.equal((await s.listBuilds({ limit: 100 })).length, 40);
      const tries = await Promise.allSettled([s.createToken(token('same')), other.createToken(token('same'))]);
      assert.deepEqual(tries.map((x) => x.status).sort(), ['fulfilled', 'rejected']);
      const refusal = tries.find((x) => x.status === 'rejected') as PromiseRejectedResult;
      assert.equal((refusal.reason as Error).message, 'a token named "same" already exists');
      await s.updateBuild(ids[0]!, { state: 'running' });
      assert.equal((await other.getBuild(ids[0]!))?.state, 'running');
    });

    test('verification: a build group is stored with its replicas at once; verdicts and worker flags persist', async (t) => {
      const { s, open } = await setup(t);
      const group = await s.insertBuildGroup([newBuild('v', 1), { ...newBuild('v', 1), reason: 'replica 2 of 2' }]);
      assert.equal(group.length, 2);
      assert.ok(group[1]!.id > group[0]!.id);
      const g = group[0]!.id;
      assert.deepEqual((await s.listVerifications(g)).map((v) => [v.buildId, v.groupId, v.replicas, v.verdict]),
        [[g, g, 2, 'pending'], [group[1]!.id, g, 2, 'pending']]);
      assert.equal((await s.listPendingVerifications()).length, 2);
      assert.equal(await s.getVerification(g + 100), null);
      await s.setVerdict(g, 'verified', '2 of 2');
      assert.equal((await s.listPendingVerifications()).length, 2, 'a group stays pending until every member has a verdict');
      await s.setVerdict(group[1]!.id, 'disagreed', 'differs');
      assert.deepEqual(await s.listPendingVerifications(), []);
      await s.flagWorker({ worker: 'wb', buildId: group[1]!.id, reason: 'differs', at: at(2) });
      await s.flagWorker({ worker: 'wb', buildId: group[1]!.id, reason: 'differs again', at: at(3) });
      const again = await open();
      assert.deepEqual(await again.getVerification(group[1]!.id), { buildId: group[1]!.id, groupId: g, replicas: 2, verdict: 'disagreed', detail: 'differs' });
      assert.deepEqual(await again.listWorkerFlags(), [{ worker: 'wb', buildId: group[1]!.id, reason: 'differs again', at: at(3) }]);
    });

    test('invites: stored by code hash, revoked once, listed oldest first', async (t) => {
      const { s, open } = await setup(t);
      await s.createInvite(invite('i2', { createdAt: at(2), expiresAt: at(100) }));
      await s.createInvite(invite('i1'));
      assert.deepEqual((await s.listInvites()).map((i) => i.id), ['i1', 'i2']);
      assert.deepEqual(await s.getInviteByCodeHash('c-i2'), invite('i2', { createdAt: at(2), expiresAt: at(100) }));
      assert.equal(await s.getInviteByCodeHash('nope'), null);
      assert.equal(await s.revokeInvite('i1', at(3)), true);
      assert.equal(await s.revokeInvite('i1', at(4)), false);
      assert.equal(await s.revokeInvite('nobody', at(4)), false);
      assert.equal((await (await open()).getInviteByCodeHash('c-i1'))?.revokedAt, at(3));
    });

    test('enroll: spends a use, makes the volunteer once, refuses used-up, expired, revoked, banned and taken names without changing anything', async (t) => {
      const { s } = await setup(t);
      await s.createInvite(invite('i', { expiresAt: at(50) }));
      const v = volunteer('v1');
      const first = await s.enroll(enrollment('w1', v, 'i'));
      assert.deepEqual(first, { ok: true, volunteer: v });
      assert.deepEqual(await s.getToken('w1'), { ...token('w1', ['gpu'], 2), volunteerId: 'v1', workerKey: 'wk-w1' });
      assert.equal((await s.getInviteByCodeHash('c-i'))?.usesLeft, 1);
      // Same key, another worker: the same volunteer, with the new display name; no second volunteer.
      const again = await s.enroll(enrollment('w2', { ...volunteer('v-other', 'k-v1'), displayName: 'Renamed', listed: false }, 'i'));
      assert.deepEqual(again, { ok: true, volunteer: { ...v, displayName: 'Renamed', listed: false } });
      assert.equal((await s.getToken('w2'))?.volunteerId, 'v1');
      assert.deepEqual((await s.listVolunteers()).map((x) => x.id), ['v1']);
      assert.deepEqual(await s.enroll(enrollment('w3', volunteer('v3'), 'i')), { ok: false, reason: 'used-up' });
      await s.createInvite(invite('j', { codeHash: 'c-j', expiresAt: at(10) }));
      assert.deepEqual(await s.enroll(enrollment('w3', volunteer('v3'), 'j', 10)), { ok: false, reason: 'expired' });
      await s.revokeInvite('j', at(1));
      assert.deepEqual(await s.enroll(enrollment('w3', volunteer('v3'), 'j', 2)), { ok: false, reason: 'revoked' });
      assert.deepEqual(await s.enroll(enrollment('w3', volunteer('v3'), 'missing')), { ok: false, reason: 'unknown-code' });
      assert.deepEqual(await s.enroll(enrollment('w1', volunteer('v3'), null)), { ok: false, reason: 'name-taken' });
      await s.setTrust({ volunteerId: 'v1', trust: 'banned', source: 'maintainer', reason: 'spam', at: at(5) });
      assert.deepEqual(await s.enroll(enrollment('w9', volunteer('vx', 'k-v1'), null)), { ok: false, reason: 'banned' });
      assert.equal(await s.getToken('w3'), null);
      assert.equal(await s.getToken('w9'), null);
      assert.deepEqual((await s.listVolunteers()).map((x) => x.id), ['v1']);
      assert.deepEqual(await s.enroll(enrollment('w3', volunteer('v3'), null, 6)), { ok: true, volunteer: volunteer('v3') });
    });

    test('trust: every change is an event with its reason and the trust before; setTrust resets the streak', async (t) => {
      const { s, open } = await setup(t);
      await s.enroll(enrollment('w1', volunteer('v1'), null));
      await s.setStreak('v1', 7);
      assert.equal((await s.getVolunteer('v1'))?.streak, 7);
      await s.setTrust({ volunteerId: 'v1', trust: 'trusted', source: 'earned', reason: 'agreed 7 times', at: at(2) });
      await s.setTrust({ volunteerId: 'v1', trust: 'banned', source: 'maintainer', reason: 'tampered', at: at(3) });
      await assert.rejects(s.setTrust({ volunteerId: 'nobody', trust: 'banned', source: 'maintainer', reason: 'x', at: at(3) }), /no volunteer nobody/);
      const again = await open();
      assert.deepEqual(await again.getVolunteer('v1'), { ...volunteer('v1'), trust: 'banned', trustSource: 'maintainer', streak: 0 });
      assert.deepEqual(await again.listTrustEvents('v1'), [
        { volunteerId: 'v1', trust: 'new', previous: null, source: 'join', reason: 'joined', at: at(1) },
        { volunteerId: 'v1', trust: 'trusted', previous: 'new', source: 'earned', reason: 'agreed 7 times', at: at(2) },
        { volunteerId: 'v1', trust: 'banned', previous: 'trusted', source: 'maintainer', reason: 'tampered', at: at(3) },
      ]);
      assert.equal(await again.getVolunteer('nobody'), null);
    });

    test('credit: per-day rows and totals add up; old days are pruned, totals stay; capacity buckets average and keep the max', async (t) => {
      const { s } = await setup(t);
      const zero = { builds: 0, cpuMs: 0, wallMs: 0, agreed: 0, disagreed: 0 };
      await s.addCredit({ ...zero, day: '2026-01-01', worker: 'w1', volunteerId: 'v1', builds: 1, wallMs: 5000 });
      await s.addCredit({ ...zero, day: '2026-01-01', worker: 'w1', volunteerId: 'v1', builds: 1, wallMs: 3_000_000_000_000 });
      await s.addCredit({ ...zero, day: '2026-01-02', worker: 'w1', volunteerId: 'v1', agreed: 1 });
      await s.addCredit({ ...zero, day: '2026-01-02', worker: 'w2', volunteerId: null, disagreed: 1 });
      assert.deepEqual(await s.listCreditDays('2026-01-01'), [
        { ...zero, day: '2026-01-01', worker: 'w1', volunteerId: 'v1', builds: 2, wallMs: 3_000_000_005_000 },
        { ...zero, day: '2026-01-02', worker: 'w1', volunteerId: 'v1', agreed: 1 },
        { ...zero, day: '2026-01-02', worker: 'w2', volunteerId: null, disagreed: 1 },
      ]);
      await s.pruneCreditDays('2026-01-02');
      assert.deepEqual((await s.listCreditDays('2000-01-01')).map((r) => [r.day, r.worker]), [['2026-01-02', 'w1'], ['2026-01-02', 'w2']]);
      assert.deepEqual(await s.listCreditTotals(), [
        { ...zero, worker: 'w1', volunteerId: 'v1', builds: 2, wallMs: 3_000_000_005_000, agreed: 1 },
        { ...zero, worker: 'w2', volunteerId: null, disagreed: 1 },
      ]);
      await s.addCapacitySample(5, 3);
      await s.addCapacitySample(5, 1);
      await s.addCapacitySample(167, 0);
      assert.deepEqual(await s.listCapacity(), [
        { hourOfWeek: 5, samples: 2, workersSum: 4, workersMax: 3 },
        { hourOfWeek: 167, samples: 1, workersSum: 0, workersMax: 0 },
      ]);
    });

    test('a store written by a newer Crowdbake is refused with a clear message', async (t) => {
      const { storage, s, open } = await setup(t);
      await s.insertBuild(newBuild('x'));
      await s.close();
      await storage.setSchemaVersion(MIGRATIONS.length + 5);
      await assert.rejects(open(), new RegExp(`schema is version ${MIGRATIONS.length + 5}, newer than this Crowdbake \\(${MIGRATIONS.length}\\)`));
      assert.equal(await storage.schemaVersion(), MIGRATIONS.length + 5);
      await storage.setSchemaVersion(MIGRATIONS.length);
      assert.equal((await (await open()).listBuilds({ limit: 10 })).length, 1);
    });
  });
}
