import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync, readdirSync, readFileSync, statSync } from 'node:fs';
import { join as joinPath } from 'node:path';
import type { BuildView, WorkerView } from '../protocol/api.js';
import type { HistoryEntry } from '../protocol/control-api.js';
import { ControlClient } from '../cli/control-client.js';
import { parseJoinLink } from '../protocol/join.js';
import { CLI, tempDir, type TestMaster } from './helpers/cluster.js';
import { cleanup, crowdMaster, until } from './helpers/crowd.js';

/**
 * The volunteer side of [crowd] with real processes: `crowdbake join LINK` against a real
 * master, then `crowdbake worker --data DIR` with no --master/--token; one agent serving two
 * masters by share; `crowdbake leave`.
 */

const SHORT = 'requires: { executor: host }\nsteps:\n  - run: echo short\n';
/** A build of about a tenth of a second: long enough that a few of them outweigh the agent's slow first build. */
const TENTH = 'requires: { executor: host }\nsteps:\n  - run: sleep 0.1\n';

/** The CLI in its own process, awaited (the masters run in this one: a blocking spawn would stall them). */
function cli(args: string[]): Promise<{ status: number | null; stdout: string; stderr: string }> {
  return new Promise((ok) => {
    const child = spawn(process.execPath, [CLI, ...args], { stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (c: Buffer) => { stdout += c.toString(); });
    child.stderr.on('data', (c: Buffer) => { stderr += c.toString(); });
    child.on('close', (status) => ok({ status, stdout, stderr }));
  });
}

async function invite(m: TestMaster, extra: string[] = []): Promise<string> {
  const r = await cli(['invite', 'create', '--data', m.dataDir, ...extra]);
  assert.equal(r.status, 0, r.stderr);
  return r.stdout.trim().split('\n').pop()!;
}

function agent(dataDir: string): ChildProcess & { output: () => string } {
  const child = spawn(process.execPath, [CLI, 'worker', '--data', dataDir, '--executor', 'host', '--when', 'always', '--idle-source', 'none'], { stdio: ['ignore', 'pipe', 'pipe'] });
  let out = '';
  child.stdout!.on('data', (c: Buffer) => { out += c.toString(); });
  child.stderr!.on('data', (c: Buffer) => { out += c.toString(); });
  return Object.assign(child, { output: () => out });
}

async function stop(child: ChildProcess): Promise<void> {
  if (child.exitCode !== null) return;
  const gone = new Promise((ok) => child.once('exit', ok));
  child.kill('SIGTERM');
  await gone;
}

const mode = (f: string) => statSync(f).mode & 0o777;

test('crowdbake join LINK → files 0600 without the invite code → crowdbake worker --data DIR (no --master, no --token) builds; a used-up link is refused with nothing written', async (t) => {
  const dirs: string[] = [];
  const m = await crowdMaster({ short: SHORT }, 'name: Test Farm\n', dirs);
  const data = tempDir('crowd-volunteer');
  dirs.push(data);
  let child: (ChildProcess & { output: () => string }) | null = null;
  t.after(async () => { if (child) await stop(child); await m.close(); cleanup(...dirs); });

  const link = await invite(m, ['--uses', '1']);
  const code = parseJoinLink(link).code!;
  const joined = await cli(['join', link, '--data', data, '--name', 'ada-laptop', '--display-name', 'Ada']);
  assert.equal(joined.status, 0, joined.stderr);
  assert.equal(joined.stdout.trim(), 'test-farm');
  assert.match(joined.stderr, /joined Test Farm as worker ada-laptop \(volunteer Ada, trust new\)/);

  const files = readdirSync(joinPath(data, 'projects')).sort();
  assert.deepEqual(files, ['test-farm.json', 'test-farm.key']);
  for (const f of [...files.map((x) => joinPath(data, 'projects', x)), joinPath(data, 'volunteer.key')]) {
    assert.equal(mode(f), 0o600, f);
    assert.ok(!readFileSync(f, 'utf8').includes(code), `${f} must not hold the invite code`);
  }
  const saved = JSON.parse(readFileSync(joinPath(data, 'projects', 'test-farm.json'), 'utf8')) as Record<string, unknown>;
  assert.equal(saved.master, m.url);
  assert.equal(saved.worker, 'ada-laptop');
  assert.equal(saved.share, 1);
  assert.match(String(saved.token), /^cbw1\.ada-laptop\.[A-Za-z0-9_-]{43}$/);

  // The same link again: used up. The master's reason is shown, exit 1, nothing new written.
  const other = tempDir('crowd-volunteer');
  dirs.push(other);
  const again = await cli(['join', link, '--data', other, '--name', 'ada-desktop']);
  assert.equal(again.status, 1);
  assert.match(again.stderr, /refused to let this worker join: .*used up.* \(used-up\)/);
  assert.deepEqual(readdirSync(other), [], 'nothing is written when the master refuses');
  const bad = await cli(['join', 'crowdbake://join?master=http://127.0.0.1:1&code=short', '--data', other]);
  assert.equal(bad.status, 2);
  assert.match(bad.stderr, /invite code is damaged/);

  child = agent(data);
  await until('the joined worker to connect', async () => (await m.get<WorkerView[]>('/api/v1/workers')).find((w) => w.name === 'ada-laptop' && w.connected), 30_000);
  const b = await m.waitFinished(await m.force('short'), 30_000);
  assert.deepEqual([b.result, b.worker], ['success', 'ada-laptop']);

  const listed = await until('the agent to report the project', async () => {
    const r = await cli(['projects', '--data', data, '--json']);
    const rows = JSON.parse(r.stdout) as { name: string; state: string; worker: string; share: number }[];
    return rows[0]?.state === 'connected' ? rows : null;
  });
  assert.deepEqual(listed.map((r) => [r.name, r.worker, r.share]), [['test-farm', 'ada-laptop', 1]]);
});

/** Two masters (farm-a, farm-b) with `builders`, and one data dir joined to both as box-a and box-b; `setAgent` hands over the agent to stop after the test. */
async function twoFarms(t: { after(f: () => unknown): void }, builders: Record<string, string>, inviteFlags: string[] = []) {
  const dirs: string[] = [];
  const a = await crowdMaster(builders, 'name: Farm A\n', dirs);
  const b = await crowdMaster(builders, 'name: Farm B\n', dirs);
  const data = tempDir('crowd-volunteer');
  dirs.push(data);
  let child: ChildProcess | null = null;
  t.after(async () => { if (child) await stop(child); await a.close(); await b.close(); cleanup(...dirs); });
  assert.equal((await cli(['join', await invite(a, inviteFlags), '--data', data, '--name', 'box-a'])).status, 0);
  assert.equal((await cli(['join', await invite(b, inviteFlags), '--data', data, '--name', 'box-b'])).status, 0);
  return { a, b, data, setAgent: <C extends ChildProcess>(c: C): C => (child = c) };
}

test('one agent joined to two masters builds for both in proportion to their shares (3:1); leave stops serving one', async (t) => {
  const { a, b, data, setAgent } = await twoFarms(t, { short: SHORT, tenth: TENTH });
  // The same volunteer key for both projects.
  assert.equal(readdirSync(data).filter((f) => f === 'volunteer.key').length, 1);
  const share = await cli(['projects', 'share', 'farm-a', '3', '--data', data]);
  assert.equal(share.status, 0, share.stderr);
  assert.equal(share.stdout.trim(), 'farm-a: share 3');
  assert.equal((await cli(['projects', 'share', 'nope', '3', '--data', data])).status, 1);

  // Both masters flooded before the agent starts: it picks by share from the first slot on.
  const N = 40;
  for (let i = 0; i < N; i++) { await a.force('tenth'); await b.force('tenth'); }
  const child = setAgent(agent(data));

  // The share is of slot time, not of builds (BOINC's rule, pickByShare): a farm whose build ran
  // long (the agent's first is the slowest) is owed less afterwards. So the check is on time,
  // measured where the builds run (the agent's history), not a count of builds.
  //
  // The rule picks the farm with the larger deficit at each free slot. With dev = usedA − ¾·total
  // (A is owed time while dev < 0), a pick of A moves dev up by ¼ of that build's length, a pick
  // of B down by ¾ of it, so once both are served dev stays within [−¾·L, ¼·L] (L: the longest
  // build so far). A master's reply slower than the offer (OFFER_MS) or a farm that connected
  // later can push it out for a while; the rule brings it back, so the check waits for that.
  // A 1:1 split would leave dev at −¼·total, which the "total ≥ 4·L" condition puts outside.
  const control = await until('the agent\'s control API', () => { const o = ControlClient.open(data); return 'client' in o ? o.client : null; }, 30_000);
  const portOf = (m: TestMaster) => new URL(m.url).port;
  let last = '';
  const shared = await until('slot time shared 3:1 between the two farms', async () => {
    const hist = (await control.call<HistoryEntry[]>('GET', '/history?limit=1000')).filter((h) => h.finishedAt);
    const len = (h: HistoryEntry) => Date.parse(h.finishedAt!) - Date.parse(h.startedAt);
    const of = (m: TestMaster) => hist.filter((h) => new URL(h.master).port === portOf(m));
    assert.equal(of(a).length + of(b).length, hist.length, 'every build ran for farm A or farm B');
    assert.ok(hist.every((h) => h.result === 'success'), JSON.stringify(hist.map((h) => [h.master, h.result, h.message])));
    const usedA = of(a).reduce((x, h) => x + len(h), 0);
    const total = hist.reduce((x, h) => x + len(h), 0);
    const longest = Math.max(0, ...hist.map(len));
    const dev = usedA - 0.75 * total;
    last = `${of(a).length} builds for A, ${of(b).length} for B; A used ${usedA} of ${total} ms (dev ${dev.toFixed(0)} ms, longest build ${longest} ms)`;
    const ok = hist.length >= 20 && total >= 4 * longest && dev >= -0.75 * longest - 5 && dev <= 0.25 * longest + 5;
    return ok ? { builds: [of(a).length, of(b).length] as const, last } : null;
  }, 120_000).catch((e: Error) => { throw new Error(`${e.message}: ${last}\n${child.output()}`); });
  // Both still have queued work: neither was starved or ran dry while it was measured.
  assert.ok(shared.builds[0] < N && shared.builds[1] < N && shared.builds[1] > 0, shared.last);

  const left = await cli(['leave', 'farm-b', '--data', data]);
  assert.equal(left.status, 0, left.stderr);
  assert.match(left.stdout, /left farm-b \(http:\/\/127\.0\.0\.1:\d+, worker box-b\)/);
  assert.ok(!existsSync(joinPath(data, 'projects', 'farm-b.json')) && !existsSync(joinPath(data, 'projects', 'farm-b.key')));
  await until('master B to see the worker gone', async () => !(await b.get<WorkerView[]>('/api/v1/workers')).find((w) => w.name === 'box-b')?.connected, 30_000);
  const rows = JSON.parse((await cli(['projects', '--data', data, '--json'])).stdout) as { name: string }[];
  assert.deepEqual(rows.map((r) => r.name), ['farm-a']);
  // A keeps being served; B's new build stays queued (nobody serves it).
  const late = await b.force('short');
  for (let i = 0; i < 3; i++) {
    const x = await a.waitFinished(await a.force('short'), 60_000);
    assert.deepEqual([x.result, x.worker], ['success', 'box-a'], child.output());
  }
  assert.equal((await b.get<BuildView>(`/api/v1/builds/${late}`)).state, 'queued');
  assert.match(child.output(), /farm-b: left; disconnecting/);
});

test('across two projects the volunteer\'s --builds caps the total, and pause freezes the builds of both', async (t) => {
  const SLOW = 'requires: { executor: host }\nsteps:\n  - run: sleep 2\n';
  const { a, b, data, setAgent } = await twoFarms(t, { slow: SLOW }, ['--max-builds', '4']);
  for (let i = 0; i < 4; i++) { await a.force('slow'); await b.force('slow'); }
  const child = setAgent(spawn(process.execPath, [CLI, 'worker', '--data', data, '--executor', 'host', '--when', 'always', '--idle-source', 'none', '--builds', '2'], { stdio: ['ignore', 'pipe', 'pipe'] }));
  let out = '';
  child.stdout.on('data', (c: Buffer) => { out += c.toString(); });
  child.stderr.on('data', (c: Buffer) => { out += c.toString(); });
  const running = async () => [...await a.get<BuildView[]>('/api/v1/builds?state=running'), ...await b.get<BuildView[]>('/api/v1/builds?state=running')];
  // Builds running for both masters (the agent's two slots).
  await until('builds running for both masters', async () => (await running()).length >= 2, 60_000);
  const pause = await cli(['pause', '--data', data]);
  assert.equal(pause.status, 0, pause.stderr);
  const status = await until('every running build frozen', async () => {
    const s = JSON.parse((await cli(['status', '--data', data, '--json'])).stdout) as { current: { frozen: boolean }[] };
    return s.current.length > 0 && s.current.every((c) => c.frozen) ? s : null;
  });
  assert.ok(status.current.length <= 2);
  assert.equal((await cli(['resume', '--data', data])).status, 0);
  // All eight finish; the local history shows no moment with more than two builds.
  await until('all builds finished', async () => (await a.get<BuildView[]>('/api/v1/builds?state=finished')).length + (await b.get<BuildView[]>('/api/v1/builds?state=finished')).length === 8, 120_000);
  const all = [...await a.get<BuildView[]>('/api/v1/builds?state=finished'), ...await b.get<BuildView[]>('/api/v1/builds?state=finished')];
  assert.ok(all.every((x) => x.result === 'success'), out);
  // Measured where the builds run (the agent's history): a master may count an assignment that
  // waited here for a free slot as running, but it did not run before a slot was free.
  const opened = ControlClient.open(data);
  assert.ok('client' in opened);
  const hist = await opened.client.call<HistoryEntry[]>('GET', '/history?limit=100');
  assert.equal(hist.length, 8);
  assert.deepEqual(new Set(hist.map((h) => h.master)).size, 2, 'builds of both projects ran');
  const edges = hist.flatMap((x) => [[Date.parse(x.startedAt), 1], [Date.parse(x.finishedAt!), -1]] as const).sort((p, q) => p[0] - q[0] || p[1] - q[1]);
  let now = 0;
  let most = 0;
  for (const [, d] of edges) { now += d; most = Math.max(most, now); }
  assert.ok(most <= 2, `${most} builds overlapped (the volunteer allows 2)`);
});

test('a master\'s drain on one of two projects stays: the projects watcher does not dial that master again, the other project goes on', async (t) => {
  const { a, b, data, setAgent } = await twoFarms(t, { short: SHORT });
  const agentOut = setAgent(agent(data));
  const connectedTo = (m: TestMaster, name: string) => until(`${name} connected`, async () => (await m.get<WorkerView[]>('/api/v1/workers')).find((w) => w.name === name)?.connected);
  await connectedTo(a, 'box-a');
  await connectedTo(b, 'box-b');
  const dialsOfA = () => (agentOut.output().match(/farm-a: connected to /g) ?? []).length;
  // The master lists the worker once it read the hello; the agent says so once the welcome came back.
  await until('the agent to say it connected to farm A', () => dialsOfA() >= 1);
  assert.equal(dialsOfA(), 1);

  const r = await fetch(`${a.url}/api/v1/workers/box-a/drain`, { method: 'POST', body: '{}', headers: { 'content-type': 'application/json', authorization: `Bearer ${a.adminToken}` } });
  assert.equal(r.status, 202);
  await until('the agent to leave farm A', () => /farm-a: the master asks this worker to leave/.test(agentOut.output()));
  await until('master A to see box-a gone', async () => !(await a.get<WorkerView[]>('/api/v1/workers')).find((w) => w.name === 'box-a')?.connected);
  // Two rounds of the projects watcher after the drain (each seen by the share change it applies).
  for (const share of ['2', '3']) {
    assert.equal((await cli(['projects', 'share', 'farm-b', share, '--data', data])).status, 0);
    await until(`the watcher to apply farm-b's share ${share}`, () => agentOut.output().includes(`farm-b: share ${Number(share) - 1} → ${share}`));
  }
  assert.equal(dialsOfA(), 1, `the watcher dialed the drained master again:\n${agentOut.output()}`);
  assert.equal((await a.get<WorkerView[]>('/api/v1/workers')).find((w) => w.name === 'box-a')?.connected, false);
  // Farm B is still served.
  const x = await b.waitFinished(await b.force('short'), 60_000);
  assert.deepEqual([x.result, x.worker], ['success', 'box-b']);
});
