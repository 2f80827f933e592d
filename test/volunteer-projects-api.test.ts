// The projects part of the agent's control API (what the volunteer pages use in a browser,
// `crowdbake ui`): list, change a share, leave, join from a pasted link; bad input refused naming the problem.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { startWorker } from '../worker/agent.js';
import { joinFromLink } from '../worker/control-projects.js';
import { listProjects } from '../worker/projects.js';
import { CLI, cleanup, tempDir, testMaster, until } from './helpers/cluster.js';

test('projects over the control API: list with live state, share, leave, join; refusals name the problem and change nothing', { timeout: 60_000 }, async (t) => {
  const dir = tempDir('projects-api');
  const m = await testMaster({}, { dir: join(dir, 'master') });
  const invite = () => spawnSync(process.execPath, [CLI, 'invite', 'create', '--data', m.dataDir, '--uses', '3'], { encoding: 'utf8' }).stdout.trim().split('\n').at(-1)!;
  const dataDir = join(dir, 'worker');
  const first = await joinFromLink(dataDir, { link: invite(), listed: true });
  const w = await startWorker({ dataDir, executor: 'host', labels: [], log: () => undefined, idleSource: 'none' });
  t.after(async () => { await w.close(); await m.close(); cleanup(dir); });
  const { url, secret } = JSON.parse(readFileSync(join(dataDir, 'control.json'), 'utf8')) as { url: string; secret: string };
  const call = async (method: string, path: string, body?: unknown) => {
    const r = await fetch(`${url}/api/v1${path}`, { method, headers: { authorization: `Bearer ${secret}`, 'content-type': 'application/json' }, ...(body !== undefined ? { body: JSON.stringify(body) } : {}) });
    return { status: r.status, body: await r.json() as unknown };
  };
  await until('connected', () => w.status().projects?.[0]?.connected);
  const listed = await call('GET', '/projects');
  assert.equal(listed.status, 200);
  assert.deepEqual((listed.body as { name: string; state: string }[]).map((p) => [p.name, p.state]), [[first.project, 'connected']]);

  assert.equal((await call('PATCH', `/projects/${first.project}`, { share: 4 })).status, 200);
  await until('share applied', () => w.status().projects?.[0]?.share === 4);
  const bad = await call('PATCH', `/projects/${first.project}`, { share: -1 });
  assert.deepEqual([bad.status, /share: /.test((bad.body as { error: string }).error)], [400, true]);
  const missing = await call('DELETE', '/projects/nope');
  assert.equal(missing.status, 404);
  assert.match((missing.body as { error: string }).error, /no joined project "nope"/);
  const refused = await call('POST', '/projects', { link: 'crowdbake://join?master=ftp://x' });
  assert.equal(refused.status, 409);
  const again = await call('POST', '/projects', { link: invite() });
  assert.match((again.body as { error: string }).error, /already joined/);
  assert.equal(listProjects(dataDir).length, 1, 'refusals wrote nothing');

  const left = await call('DELETE', `/projects/${first.project}`);
  assert.deepEqual([left.status, left.body], [200, []]);
  await until('the agent left', () => w.status().projects?.length === 0);
});
