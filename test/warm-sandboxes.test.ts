// The container executor's warm sandboxes (worker/executors/warm-pool.ts) under a real agent,
// master and podman: the pool follows the volunteer's rules (empty while builds may not run —
// in use, paused, outside the schedule — made again when they may), a limit changed between
// warm-up and take is never bypassed, and a warm container removed from outside leaves the
// next build to open its sandbox on demand.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync, spawnSync } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { startWorker } from '../worker/agent.js';
import { CpuQuota } from '../worker/executors/fast/cpu-quota.js';
import { removeWarmLeftovers, WARM_AGENT_LABEL } from '../worker/executors/warm-pool.js';
import { AgentClient } from '../app/agent-client.js';
import { cleanup, tempDir, testMaster, until } from './helpers/cluster.js';

const OWNER = 'w-warmrules';
/** Prints the CPU quota of the cgroup it runs in (v1 cpu.cfs_quota_us, v2 cpu.max). */
const QUOTA = 'requires: { executor: container }\nsteps:\n  - run: "echo quota=$(cat /sys/fs/cgroup/cpu/cpu.cfs_quota_us 2>/dev/null || cut -d\\" \\" -f1 /sys/fs/cgroup/cpu.max)"\n';

/** The worker's warm containers (made ahead, not yet taken), as [id, host pid of its agent]. */
function warmContainers(): { id: string; pid: number }[] {
  return execFileSync('podman', ['ps', '-a', '--filter', `label=crowdbake.owner=${OWNER}`, '--filter', `label=${WARM_AGENT_LABEL}`, '--format', '{{.ID}} {{.Pid}}'])
    .toString().split('\n').filter(Boolean).map((l) => { const [id, pid] = l.trim().split(' '); return { id: id!, pid: Number(pid) }; });
}

/**
 * `podman rm -f` as a volunteer would run it. The container may still be in the pool's making
 * (listed and running before `podman run` and the pool's inspect have returned): podman then
 * refuses one of the two racing calls (exit 125) and the pool drops the half-made container
 * itself. Either way it is removed from outside before it is taken — which is what the test is
 * about — so a refusal is retried until the container is gone, and podman's own words are kept.
 */
async function removeFromOutside(id: string): Promise<void> {
  const refusals: string[] = [];
  for (let i = 0; i < 20; i++) {
    const r = spawnSync('podman', ['rm', '--force', '--time', '0', id], { encoding: 'utf8' });
    if (r.status === 0) return;
    refusals.push(`exit ${r.status}: ${r.stderr.trim()}`);
    if (spawnSync('podman', ['container', 'exists', id]).status === 1) {
      console.log(`warm container ${id} went while being removed from outside (${refusals.join('; ')})`);
      return;
    }
    await new Promise((res) => setTimeout(res, 250));
  }
  assert.fail(`podman rm -f ${id} refused 20 times: ${refusals.join('; ')}`);
}

test('warm sandboxes follow the volunteer: none while builds may not run, none of other limits used, one removed from outside is not missed', { timeout: 240_000, skip: process.getuid?.() !== 0 ? 'warm sandboxes need root' : false }, async (t) => {
  const dir = tempDir('warm-rules');
  const m = await testMaster({ quota: QUOTA });
  const w = await startWorker({
    master: m.url, token: await m.token('warmrules'), dataDir: dir, executor: 'container', labels: [], log: () => undefined, idleSource: 'app',
    preferences: { when: 'idle', idleAfterMs: 60_000, whileHere: 'freeze' },
  });
  t.after(async () => { await w.close(); await m.close(); await removeWarmLeftovers(OWNER, 'crowdbake.owner'); cleanup(dir); });
  const agent = AgentClient.open(dir) as AgentClient;
  const away = () => agent.reportIdle({ idleMs: 600_000, locked: false, suspended: false });
  const typing = () => agent.reportIdle({ idleMs: 0, locked: false, suspended: false });
  const logOf = (id: number): Promise<string> => fetch(`${m.url}/api/v1/builds/${id}/log`).then((r) => r.text());
  const build = async (): Promise<string> => {
    const b = await m.waitFinished(await m.force('quota'), 90_000);
    assert.equal(b.result, 'success', await logOf(b.id));
    return logOf(b.id);
  };
  const warmNow = (n: number, why: string) => until(`${n} warm container(s): ${why}`, () => (warmContainers().length === n ? warmContainers() : null), 60_000);
  await until('connected', () => w.status().master.connected);
  await away();

  // The pool learns the environment from the first build (made on demand), and has one ready behind it.
  assert.match(await build(), /quota=-1|quota=max/);
  const [first] = await warmNow(1, 'made behind the first build');

  // The volunteer is back (builds freeze): the pool is emptied; away again, it is made again.
  await typing();
  await warmNow(0, 'the volunteer uses the computer');
  await away();
  await warmNow(1, 'away again');

  // Paused, then resumed.
  await agent.call('POST', '/pause');
  await warmNow(0, 'paused');
  await agent.call('POST', '/resume');
  await warmNow(1, 'resumed');

  // Outside the schedule (no day has a window), then any time again.
  const never = Object.fromEntries(['mon', 'tue', 'wed', 'thu', 'fri', 'sat', 'sun'].map((d) => [d, []]));
  await agent.call('PATCH', '/preferences', { weekSchedule: never });
  await until('outside the schedule', () => /outside the schedule/.test(w.status().reason));
  await warmNow(0, 'outside the schedule');
  await agent.call('PATCH', '/preferences', { weekSchedule: null });
  const [madeUncapped] = await warmNow(1, 'inside the schedule again');
  assert.notEqual(madeUncapped!.id, first!.id, 'a new container each time, never the removed one');

  // The volunteer caps builds at one CPU while a warm container made without the cap is ready:
  // the build does not take it (it runs under the cap), the old one is removed, and the one made
  // behind the build has the cap.
  await agent.call('PATCH', '/preferences', { cpus: 1 });
  assert.match(await build(), /quota=100000\b/, 'the build ran under the volunteer\'s new cap');
  // The same one seen twice, 500 ms apart: not one the pool is still making, or dropping while
  // the volunteer's state flickers on a loaded machine (other programs' CPU use).
  let seen = '';
  const [capped] = await until('the uncapped warm container replaced by a capped one', async () => {
    const now = warmContainers();
    const id = now.length === 1 && now[0]!.id !== madeUncapped!.id ? now[0]!.id : '';
    if (id !== '' && id === seen) return now;
    seen = id;
    if (id !== '') await new Promise((res) => setTimeout(res, 500));
    return null;
  }, 60_000);
  const q = await CpuQuota.ofPid(capped!.pid);
  assert.ok(q, 'the warm container\'s CPU cgroup');
  const quota = existsSync(join(q.dir, 'cpu.max')) ? readFileSync(join(q.dir, 'cpu.max'), 'utf8').split(' ')[0] : readFileSync(join(q.dir, 'cpu.cfs_quota_us'), 'utf8');
  assert.equal(quota!.trim(), '100000', 'the new warm container has the new cap');

  // Removed from outside before it is taken (a volunteer's `podman rm -f`): the next build still runs, in a sandbox made on demand.
  await removeFromOutside(capped!.id);
  assert.match(await build(), /quota=100000\b/);
  const [after] = await warmNow(1, 'made again behind that build');
  assert.notEqual(after!.id, capped!.id);
});
