import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { join as joinPath } from 'node:path';
import type { BuildView, InviteView, VolunteerView } from '../protocol/api.js';
import { parseJoinLink } from '../protocol/join.js';
import { openStore } from '../master/store/open-store.js';
import type { WorkerHandle } from '../worker/agent.js';
import { CLI } from './helpers/cluster.js';
import { admin, cleanup, crowdMaster, identity, inviteCode, join, joinedWorker, rawWorker, until } from './helpers/crowd.js';

const GPU = 'requires: { executor: host, labels: [gpu] }\nsteps:\n  - run: echo built-by-a-volunteer\n';

test('invite → join → the worker connects with the token it made, gets the invite\'s labels and builds', async (t) => {
  const dirs: string[] = [];
  const workers: WorkerHandle[] = [];
  const m = await crowdMaster({ gpu: GPU }, 'name: Test Farm\n', dirs);
  t.after(async () => { for (const w of workers) await w.close(); await m.close(); cleanup(...dirs); });

  const made = spawnSync(process.execPath, [CLI, 'invite', 'create', '--data', m.dataDir, '--labels', 'gpu', '--uses', '2', '--max-builds', '1', '--note', 'for Ada'], { encoding: 'utf8' });
  assert.equal(made.status, 0, made.stderr);
  const lines = made.stdout.trim().split('\n');
  const link = parseJoinLink(lines[lines.length - 1]!);
  assert.equal(link.master, m.url);
  assert.equal(link.farm, 'Test Farm');
  assert.ok(link.code);

  const ada = identity();
  const joined = await join(m, { worker: 'ada-laptop', code: link.code, who: ada, displayName: 'Ada' });
  assert.equal(joined.status, 201, JSON.stringify(joined.body));
  assert.deepEqual({ ...joined.body, volunteer: { ...joined.body.volunteer, id: 'x' } },
    { worker: 'ada-laptop', volunteer: { id: 'x', displayName: 'Ada', trust: 'new' }, labels: ['gpu'], maxBuilds: 1, farm: 'Test Farm' });

  // Only hashes are stored: neither the code nor the worker's secret is in the store.
  const store = await openStore(`sqlite:${joinPath(m.dataDir, 'crowdbake.db')}`);
  try {
    const tok = (await store.getToken('ada-laptop'))!;
    assert.equal(tok.volunteerId, joined.body.volunteer.id);
    assert.ok(tok.workerKey);
    assert.notEqual(tok.hash, joined.token.split('.')[2]);
    const inv = (await store.listInvites())[0]!;
    assert.notEqual(inv.codeHash, link.code);
    assert.equal(inv.usesLeft, 1);
  } finally { await store.close(); }

  workers.push(await joinedWorker(m, joined.token, dirs));
  const id = await m.force('gpu');
  const b = await m.waitFinished(id, 30_000);
  assert.equal(b.result, 'success');
  assert.equal(b.worker, 'ada-laptop');

  // A second machine of the same volunteer is the same volunteer.
  const second = await join(m, { worker: 'ada-desktop', code: link.code, who: ada, displayName: 'Ada L.' });
  assert.equal(second.status, 201);
  assert.equal(second.body.volunteer.id, joined.body.volunteer.id);
  const list = (await admin<VolunteerView[]>(m, 'GET', '/api/v1/volunteers')).body;
  assert.equal(list.length, 1);
  assert.equal(list[0]!.displayName, 'Ada L.');
  assert.deepEqual(list[0]!.workers!.map((w) => w.name).sort(), ['ada-desktop', 'ada-laptop']);
  await until('the build counted in the volunteer\'s credit', async () => (await m.get<VolunteerView[]>('/api/v1/volunteers'))[0]?.credit.builds === 1);

  const listed = spawnSync(process.execPath, [CLI, 'invite', 'list', '--data', m.dataDir], { encoding: 'utf8' });
  assert.match(listed.stdout, /inv-[0-9a-f]+\tused-up\tuses=0\/2\tlabels=gpu\tmax-builds=1\texpires=never\t.*note=for Ada/);
});

test('expired, used-up, revoked and unknown codes, closed and invite-only farms: each refused with its reason, nothing stored', async (t) => {
  const dirs: string[] = [];
  const m = await crowdMaster({}, 'enrollment: { mode: invite }\n', dirs);
  t.after(async () => { await m.close(); cleanup(...dirs); });

  const once = await inviteCode(m, { uses: 1 });
  assert.equal((await join(m, { worker: 'w1', code: once.code })).status, 201);
  const usedUp = await join(m, { worker: 'w2', code: once.code });
  assert.deepEqual([usedUp.status, usedUp.body.reason], [410, 'used-up']);
  assert.match(usedUp.body.error!, /used up/);

  const short = await inviteCode(m, { expiresInMs: 1 });
  await until('the invite to expire', async () => (await admin<InviteView[]>(m, 'GET', '/api/v1/invites')).body.find((i) => i.id === short.id)?.state === 'expired');
  const expired = await join(m, { worker: 'w3', code: short.code });
  assert.deepEqual([expired.status, expired.body.reason], [410, 'expired']);
  assert.match(expired.body.error!, /expired/);

  const gone = await inviteCode(m, { uses: 5 });
  assert.deepEqual((await admin(m, 'DELETE', `/api/v1/invites/${gone.id}`)).status, 200);
  assert.equal((await admin(m, 'DELETE', `/api/v1/invites/${gone.id}`)).status, 404);
  const revoked = await join(m, { worker: 'w4', code: gone.code });
  assert.deepEqual([revoked.status, revoked.body.reason], [410, 'revoked']);
  assert.match(revoked.body.error!, /revoked/);

  const unknown = await join(m, { worker: 'w5', code: 'A'.repeat(32) });
  assert.deepEqual([unknown.status, unknown.body.reason], [404, 'unknown-code']);
  const noCode = await join(m, { worker: 'w6' });
  assert.deepEqual([noCode.status, noCode.body.reason], [403, 'invite-only']);
  assert.match(noCode.body.error!, /by invitation only/);

  const taken = await join(m, { worker: 'w1', code: (await inviteCode(m)).code });
  assert.deepEqual([taken.status, taken.body.reason], [409, 'name-taken']);

  // Someone else's volunteer key without its private key: the signature does not verify.
  const victim = identity();
  const forged = await join(m, { worker: 'w7', code: (await inviteCode(m)).code, who: victim, signWith: identity() });
  assert.equal(forged.status, 400);
  assert.match(forged.body.error!, /volunteerSignature: the signature does not verify/);

  assert.deepEqual((await admin<VolunteerView[]>(m, 'GET', '/api/v1/volunteers')).body.map((v) => v.workers!.map((w) => w.name)), [['w1']]);
  // The invite list never shows a code or its hash.
  assert.ok((await admin<Record<string, unknown>[]>(m, 'GET', '/api/v1/invites')).body.every((i) => !('code' in i) && !('codeHash' in i)));
  assert.equal((await fetch(`${m.url}/api/v1/invites`)).status, 401);

  const closedDirs: string[] = [];
  const closed = await crowdMaster({}, 'enrollment: { mode: closed }\n', closedDirs);
  t.after(async () => { await closed.close(); cleanup(...closedDirs); });
  const c = await join(closed, { worker: 'w8', code: (await inviteCode(closed)).code });
  assert.deepEqual([c.status, c.body.reason], [403, 'closed']);
});

test('open enrollment: joining without a code works as a new volunteer, rate-limited per address; unlisted volunteers are hidden from the public', async (t) => {
  const dirs: string[] = [];
  const workers: WorkerHandle[] = [];
  const m = await crowdMaster({ any: 'requires: { executor: host }\nsteps:\n  - run: echo open\n' }, 'name: Open Farm\nenrollment: { mode: open, joinsPerHour: 2 }\n', dirs);
  t.after(async () => { for (const w of workers) await w.close(); await m.close(); cleanup(...dirs); });

  const info = await m.get<{ mode: string; link: string }>('/api/v1/enrollment');
  assert.equal(info.mode, 'open');
  assert.deepEqual(parseJoinLink(info.link), { master: m.url, farm: 'Open Farm' });

  const a = await join(m, { worker: 'open-a', displayName: 'Grace' });
  assert.equal(a.status, 201, JSON.stringify(a.body));
  assert.equal(a.body.volunteer.trust, 'new');
  assert.deepEqual(a.body.labels, []);
  const b = await join(m, { worker: 'open-b', displayName: 'Hidden', listed: false });
  assert.equal(b.status, 201);
  const c = await join(m, { worker: 'open-c' });
  assert.deepEqual([c.status, c.body.reason], [429, 'rate-limited']);
  assert.match(c.body.error!, /too many joins from .*try again in \d+s/);

  workers.push(await joinedWorker(m, a.token, dirs));
  assert.equal((await m.waitFinished(await m.force('any'), 30_000)).result, 'success');

  const pub = await m.get<VolunteerView[]>('/api/v1/volunteers');
  assert.deepEqual(pub.map((v) => [v.displayName, v.trust]), [['Grace', 'new']]);
  assert.equal(pub[0]!.workers, undefined, 'the public does not see workers');
  assert.equal((await admin<VolunteerView[]>(m, 'GET', '/api/v1/volunteers')).body.length, 2);
  const hidden = (await admin<VolunteerView[]>(m, 'GET', '/api/v1/volunteers')).body.find((v) => v.displayName === 'Hidden')!;
  assert.equal((await fetch(`${m.url}/api/v1/volunteers/${hidden.id}/credit`)).status, 404);
  assert.equal((await admin<unknown[]>(m, 'GET', `/api/v1/volunteers/${hidden.id}/credit`)).body.length, 90);
  const series = await until('the build in the per-day credit', async () => {
    const s = await m.get<{ day: string; builds: number }[]>(`/api/v1/volunteers/${pub[0]!.id}/credit`);
    return s[s.length - 1]!.builds === 1 ? s : null;
  });
  assert.equal(series.length, 90);
  assert.equal(series[89]!.day, new Date().toISOString().slice(0, 10));
});

test('a banned volunteer\'s workers are disconnected at once and refused on reconnect; a new join with their key is refused', async (t) => {
  const dirs: string[] = [];
  const m = await crowdMaster({ slow: 'requires: { executor: host }\nsteps:\n  - run: sleep 30\n' }, 'enrollment: { mode: open }\n', dirs);
  t.after(async () => { await m.close(); cleanup(...dirs); });
  const mallory = identity();
  const one = await join(m, { worker: 'm-one', who: mallory, displayName: 'Mallory' });
  const two = await join(m, { worker: 'm-two', who: mallory, displayName: 'Mallory' });
  const w1 = await rawWorker(m, 'm-one', one.token);
  const w2 = await rawWorker(m, 'm-two', two.token);
  assert.ok(w1.inbox.some((f) => f.type === 'welcome') && w2.inbox.some((f) => f.type === 'welcome'));
  // A build runs on one of them, so the ban also takes a build away.
  const id = await m.force('slow');
  await until('the build to reach a worker', () => [...w1.inbox, ...w2.inbox].find((f) => f.type === 'assign'));

  const banned = spawnSync(process.execPath, [CLI, 'volunteers', 'ban', 'Mallory', '--data', m.dataDir, '--reason', 'tampered artifacts'], { encoding: 'utf8' });
  assert.equal(banned.status, 0, banned.stderr);
  assert.match(banned.stdout, /Mallory \(vol-[0-9a-f]+\) is now banned/);
  const [c1, c2] = await Promise.all([w1.closed, w2.closed]);
  assert.deepEqual([c1.code, c2.code], [4401, 4401]);
  assert.match(c1.reason, /volunteer banned/);
  assert.ok(w1.inbox.some((f) => f.fatal && /volunteer banned/.test(f.message ?? '')));
  await until('the build requeued', async () => (await m.get<BuildView>(`/api/v1/builds/${id}`)).state === 'queued');

  const again = await rawWorker(m, 'm-one', one.token);
  assert.deepEqual((await again.closed).code, 4401);
  assert.ok(again.inbox.some((f) => f.fatal && /authentication failed: volunteer banned/.test(f.message ?? '')));
  assert.ok(!again.inbox.some((f) => f.type === 'welcome'));
  const rejoin = await join(m, { worker: 'm-three', who: mallory });
  assert.deepEqual([rejoin.status, rejoin.body.reason], [403, 'banned']);

  const v = (await admin<VolunteerView[]>(m, 'GET', '/api/v1/volunteers')).body[0]!;
  assert.deepEqual(v.trustEvents!.map((e) => [e.trust, e.source, e.reason]), [['new', 'join', 'joined by open enrollment'], ['banned', 'maintainer', 'tampered artifacts']]);
});
