import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync, spawnSync } from 'node:child_process';
import { mkdirSync, writeFileSync } from 'node:fs';
import { join as joinPath } from 'node:path';
import { AttemptStatementSchema, ProvenanceBundleSchema } from '../protocol/provenance.js';
import { startGitHttpServer } from '../master/sources/git-http-server.js';
import { startWorker } from '../worker/agent.js';
import { CLI, tempDir } from './helpers/cluster.js';
import { cleanup, crowdMaster, identity, join } from './helpers/crowd.js';

/**
 * [provenance] A build of a real git repository behind a credential: the worker's statement
 * names the exact revision it checked out and the source with the credential redacted (the
 * statement is published), the master accepts it (its own record of the revision agrees),
 * and the downloaded file verifies.
 */

test('a build of a private repository: the statement names the revision checked out and the source without its credential; the master accepts it', async (t) => {
  const dirs: string[] = [];
  const root = tempDir('prov-repos');
  dirs.push(root);
  const repo = joinPath(root, 'pkg.git');
  mkdirSync(repo);
  const git = (...a: string[]) => execFileSync('git', ['-c', 'user.name=t', '-c', 'user.email=t@example.org', ...a], { cwd: repo, encoding: 'utf8' }).trim();
  git('init', '--quiet', '--initial-branch=main');
  writeFileSync(joinPath(repo, 'file.txt'), 'the source\n');
  git('add', 'file.txt');
  git('commit', '--quiet', '-m', 'one');
  const head = git('rev-parse', 'HEAD');
  const secret = 'tok-provenance-secret';
  const server = await startGitHttpServer({ root, auth: { user: 'ci', password: secret } });
  const m = await crowdMaster({
    src: `source: { git: "${server.urlOf('pkg.git')}" }\nrequires: { executor: host }\nprovenance: required\nsteps:\n  - run: cp file.txt out.txt\nartifacts: [out.txt]\n`,
  }, 'enrollment: { mode: open, joinsPerHour: 100 }\n', dirs);
  const key = identity();
  const j = await join(m, { worker: 'sw', workerKey: key, displayName: 'Sam' });
  const wdir = tempDir('prov-sw');
  dirs.push(wdir);
  const w = await startWorker({ preferences: { when: 'always' }, idleSource: 'none', master: m.url, token: j.token, dataDir: wdir, executor: 'host', labels: [], workerKey: key.privateKey, log: () => undefined });
  t.after(async () => { await w.close(); await m.close(); await server.close(); cleanup(...dirs); });

  const id = await m.force('src');
  const b = await m.waitFinished(id, 60_000);
  assert.equal(b.result, 'success', b.message ?? '');
  assert.equal(b.revision, head);
  const text = await (await fetch(`${m.url}/api/v1/builds/${id}/artifacts/out.txt/provenance`)).text();
  assert.ok(!text.includes(secret), 'no credential in the bundle');
  const bundle = ProvenanceBundleSchema.parse(JSON.parse(text));
  const st = AttemptStatementSchema.parse(JSON.parse(Buffer.from(bundle.attestations[0]!.envelope.payload, 'base64').toString()));
  const redacted = `http://***@127.0.0.1:${server.port}/pkg.git`;
  assert.deepEqual(st.predicate.buildDefinition.externalParameters.source, { git: redacted, branch: 'main' });
  assert.equal(st.predicate.buildDefinition.externalParameters.revision, head);
  assert.deepEqual(st.predicate.buildDefinition.resolvedDependencies, [{ uri: `git+${redacted}@refs/heads/main`, digest: { gitCommit: head } }]);

  const dl = tempDir('prov-sdl');
  dirs.push(dl);
  writeFileSync(joinPath(dl, 'out.txt'), Buffer.from(await (await fetch(`${m.url}/api/v1/builds/${id}/artifacts/out.txt`)).arrayBuffer()));
  writeFileSync(joinPath(dl, 'b.json'), text);
  const v = spawnSync(process.execPath, [CLI, 'verify', joinPath(dl, 'out.txt'), '--provenance', joinPath(dl, 'b.json'), '--farm-key', bundle.farmKey.keyid, '--allow-unreplicated'], { encoding: 'utf8' });
  assert.equal(v.status, 0, v.stdout + v.stderr);
  assert.match(v.stdout, new RegExp(`revision ${head}`));
});
