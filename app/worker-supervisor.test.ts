// Quitting with "finish the current build first": a real master, a real `crowdbake worker`
// process under the supervisor; the build running at quit finishes (not requeued), then the worker stops.
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { test } from 'node:test';
import type { BuildView } from '../protocol/api.js';
import { CLI, cleanup, tempDir, testMaster, until } from '../test/helpers/cluster.js';
import { AgentClient } from './agent-client.js';
import { WorkerSupervisor } from './worker-supervisor.js';

test('stop(finish) lets the running build finish, then stops the worker; stop(requeue) stops at once and the master requeues', { timeout: 120_000 }, async (t) => {
  const dir = tempDir('supervisor');
  const m = await testMaster({ slow: 'requires: { executor: host }\nsteps:\n  - run: "sleep 3; echo finished"\n' });
  const dataDir = join(dir, 'worker');
  const token = await m.token('sup');
  const sup = new WorkerSupervisor({
    execPath: process.execPath, dataDir, log: () => undefined, restartDelayMs: 100,
    args: () => [CLI, 'worker', '--master', m.url, '--data', dataDir, '--executor', 'host', '--when', 'always', '--idle-source', 'none'],
    env: () => ({ ...process.env, CROWDBAKE_WORKER_TOKEN: token }),
  });
  t.after(async () => { await sup.stop('requeue'); await m.close(); cleanup(dir); });
  sup.start();
  await until('agent up', async () => { const c = AgentClient.open(dataDir); return typeof c !== 'string' && (await c.status().catch(() => null))?.master.connected; }, 60_000);

  const id = await m.force('slow');
  await until('running', async () => (await m.get<BuildView>(`/api/v1/builds/${id}`)).state === 'running');
  await sup.stop('finish');
  assert.equal(sup.running, false);
  const b = await m.get<BuildView>(`/api/v1/builds/${id}`);
  assert.deepEqual([b.state, b.result, b.attempt], ['finished', 'success', 1], 'finished here, not requeued');
});
