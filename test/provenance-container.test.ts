import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import { join as joinPath } from 'node:path';
import { AttemptStatementSchema, ProvenanceBundleSchema } from '../protocol/provenance.js';
import { startWorker } from '../worker/agent.js';
import { CLI, tempDir } from './helpers/cluster.js';
import { cleanup, crowdMaster, identity, join } from './helpers/crowd.js';

/**
 * [provenance] A container build (real podman, the busybox base): the worker's signed
 * statement names the image its steps ran in, and the downloaded file verifies.
 */

const BUILDER = `
requires: { executor: container }
environment: { base: busybox, setup: ["echo prepared > /etc/prepared"] }
provenance: required
steps:
  - run: cat /etc/prepared > out.txt
artifacts: [out.txt]
`;

test('a container build\'s statement names its environment: base, setup lines, its hash and the podman image id it ran in', async (t) => {
  const dirs: string[] = [];
  const m = await crowdMaster({ c: BUILDER }, 'enrollment: { mode: open, joinsPerHour: 100 }\n', dirs);
  const key = identity();
  const j = await join(m, { worker: 'cw', workerKey: key, displayName: 'Cat' });
  const wdir = tempDir('prov-cw');
  dirs.push(wdir);
  const w = await startWorker({ preferences: { when: 'always' }, idleSource: 'none', master: m.url, token: j.token, dataDir: wdir, executor: 'container', labels: [], workerKey: key.privateKey, log: () => undefined });
  t.after(async () => { await w.close(); await m.close(); cleanup(...dirs); });
  const id = await m.force('c');
  const b = await m.waitFinished(id, 300_000);
  assert.equal(b.result, 'success', b.message ?? '');
  const text = await (await fetch(`${m.url}/api/v1/builds/${id}/artifacts/out.txt/provenance`)).text();
  const bundle = ProvenanceBundleSchema.parse(JSON.parse(text));
  const st = AttemptStatementSchema.parse(JSON.parse(Buffer.from(bundle.attestations[0]!.envelope.payload, 'base64').toString()));
  const env = st.predicate.buildDefinition.internalParameters.environment;
  assert.deepEqual([env.base, env.setupLines, st.predicate.buildDefinition.internalParameters.executor], ['busybox', 1, 'container']);
  assert.match(env.imageId ?? '', /^[0-9a-f]{64}$/);
  assert.equal(spawnSync('podman', ['image', 'exists', env.imageId!]).status, 0, 'the image named is one podman has');

  const dl = tempDir('prov-cdl');
  dirs.push(dl);
  writeFileSync(joinPath(dl, 'out.txt'), Buffer.from(await (await fetch(`${m.url}/api/v1/builds/${id}/artifacts/out.txt`)).arrayBuffer()));
  writeFileSync(joinPath(dl, 'b.json'), text);
  const v = spawnSync(process.execPath, [CLI, 'verify', joinPath(dl, 'out.txt'), '--provenance', joinPath(dl, 'b.json'), '--farm-key', bundle.farmKey.keyid, '--allow-unreplicated'], { encoding: 'utf8' });
  assert.equal(v.status, 0, v.stdout + v.stderr);
});
