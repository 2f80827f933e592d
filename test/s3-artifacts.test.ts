import { test } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, mkdirSync, readdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import S3rver from 's3rver';
import { S3Artifacts } from '../master/artifact-objects.js';
import { startMaster } from '../master/master.js';
import { openStore } from '../master/store/open-store.js';
import { NO_TEST_POSTGRES, TEST_POSTGRES_ENV, TestDatabases } from '../master/store/postgres-test-db.js';
import { createWorkerToken } from '../master/tokens.js';
import { startWorker } from '../worker/agent.js';
import { cleanup, tempDir, testMaster, until, writeBuilder } from './helpers/cluster.js';

// Artifacts in an S3-compatible bucket (artifacts: { s3 } in crowdbake.yml; master/artifact-objects.ts).
// The bucket is s3rver from the npm registry: a TEST STAND-IN for S3 (a local S3-compatible
// server on 127.0.0.1), spoken to by the real AWS SDK v3. Two real masters on one PostgreSQL.
const server = process.env[TEST_POSTGRES_ENV];
const skip = server ? false : NO_TEST_POSTGRES;
const BUILDER = 'requires: { executor: host }\nsteps:\n  - run: mkdir -p out && printf "artifact of build %s\\n" "$CROWDBAKE_BUILD_ID" > out/a.txt\nartifacts: ["out/*.txt"]\n';

async function bucketServer(t: { after: (f: () => Promise<void> | void) => void }) {
  const dir = tempDir('s3rver');
  const s3 = new S3rver({ port: 0, address: '127.0.0.1', silent: true, directory: dir, configureBuckets: [{ name: 'crowdbake-test', configs: [] }] });
  const { port } = await s3.run() as { port: number };
  // s3rver's fixed key pair, through the SDK's standard chain (the environment), as a master takes them.
  process.env.AWS_ACCESS_KEY_ID = 'S3RVER';
  process.env.AWS_SECRET_ACCESS_KEY = 'S3RVER';
  t.after(async () => { await s3.close().catch(() => undefined); cleanup(dir); });
  return { s3, dir, endpoint: `http://127.0.0.1:${port}` };
}

const s3Yaml = (endpoint: string, bucket = 'crowdbake-test') => `artifacts:\n  s3:\n    bucket: ${bucket}\n    prefix: farm/\n    endpoint: ${endpoint}\n    forcePathStyle: true\n`;

function masterDir(yaml: string): string {
  const dir = tempDir('s3m');
  mkdirSync(join(dir, 'config'), { recursive: true });
  writeFileSync(join(dir, 'config', 'crowdbake.yml'), yaml);
  return dir;
}

test('s3 artifacts: a build\'s artifact uploaded to master A is in the bucket and served by master B, which never received it; retention empties the bucket', { skip }, async (t) => {
  const bucket = await bucketServer(t);
  const dbs = new TestDatabases(server!);
  const url = await dbs.create();
  const a = await testMaster({ art: BUILDER }, { storeUrl: url, dir: masterDir(s3Yaml(bucket.endpoint)) });
  const b = await testMaster({ art: BUILDER }, { storeUrl: url, dir: masterDir(s3Yaml(bucket.endpoint)) });
  const wd = tempDir('s3w');
  t.after(async () => { await a.close(); await b.close(); await dbs.dropAll(); cleanup(a.dataDir, b.dataDir, wd); });
  const store = await openStore(url);
  const token = await createWorkerToken(store, 's3-w1', []);
  await store.close();
  const worker = await startWorker({ preferences: { when: 'always' }, idleSource: 'none', master: a.url, token, dataDir: wd, executor: 'host', labels: [], log: () => undefined });
  t.after(() => worker.close());
  await until('the worker on A', async () => (await a.get<{ name: string; connected: boolean }[]>('/api/v1/workers')).some((w) => w.name === 's3-w1' && w.connected));

  const id = await a.force('art');
  assert.equal((await a.waitFinished(id, 30_000)).result, 'success');
  const listed = await b.get<{ name: string; size: number; sha256: string }[]>(`/api/v1/builds/${id}/artifacts`);
  assert.equal(listed.length, 1, JSON.stringify(listed));
  const name = listed[0]!.name;
  assert.equal(existsSync(join(b.dataDir, 'artifacts', String(id))), false, 'B holds no copy of its own');
  const r = await fetch(`${b.url}/api/v1/builds/${id}/artifacts/${encodeURIComponent(name)}`);
  assert.equal(r.status, 200);
  assert.equal(await r.text(), `artifact of build ${id}\n`);
  // In the bucket under the master's own key: PREFIX artifacts/<id>/<name, URI-encoded>.
  const objects = new S3Artifacts({ bucket: 'crowdbake-test', prefix: 'farm/', region: 'us-east-1', endpoint: bucket.endpoint, forcePathStyle: true });
  t.after(() => objects.close());
  assert.equal(objects.key(id, name), `farm/artifacts/${id}/${encodeURIComponent(name)}`);
  const body = await objects.get(id, name);
  assert.ok(body);
  body.resume();

  // Retention (the lease holder's job): everything stored before "now + 1 s" goes.
  assert.equal(await objects.removeOlderThan(Date.now() + 1000), 1);
  assert.equal(await objects.get(id, name), null);
  const gone = await fetch(`${b.url}/api/v1/builds/${id}/artifacts/${encodeURIComponent(name)}`);
  assert.equal(gone.status, 404);
  await gone.text();
});

test('s3 artifacts: keys are the master\'s own — names a worker could send cannot leave the build\'s place in the bucket', () => {
  const objects = new S3Artifacts({ bucket: 'b-b', prefix: 'p/', region: 'us-east-1', forcePathStyle: true });
  try {
    for (const name of ['../x', '/etc/passwd', 'a/../../b', 'q?x=1', 'h#frag', 'ünï/cödé', 'x'.repeat(300)]) {
      const key = objects.key(7, name);
      assert.ok(key.startsWith('p/artifacts/7/'), key);
      assert.equal(key.slice('p/artifacts/7/'.length).includes('/'), false, `${name}: one key segment`);
      assert.doesNotMatch(key, /[?#]/, name);
      assert.equal(decodeURIComponent(key.slice('p/artifacts/7/'.length)), name);
    }
  } finally {
    objects.close();
  }
});

test('s3 artifacts: a missing bucket stops the master at start naming bucket and endpoint; keys in crowdbake.yml are refused; a bucket gone mid-run refuses the artifact and keeps the file', { skip }, async (t) => {
  const bucket = await bucketServer(t);
  const missing = masterDir(s3Yaml(bucket.endpoint, 'no-such-bucket'));
  await assert.rejects(startMaster({ configDir: join(missing, 'config'), dataDir: join(missing, 'data'), host: '127.0.0.1', port: 0 }),
    new RegExp(`artifacts\\.s3: cannot use bucket "no-such-bucket" at ${bucket.endpoint.replace(/\./g, '\\.')}: NotFound`));
  const keyed = masterDir(`${s3Yaml(bucket.endpoint)}    secretAccessKey: S3RVER\n`);
  await assert.rejects(startMaster({ configDir: join(keyed, 'config'), dataDir: join(keyed, 'data'), host: '127.0.0.1', port: 0 }),
    /artifacts\.s3\.secretAccessKey: AWS credentials never go in crowdbake\.yml: the S3 artifact store takes them from the AWS SDK's standard chain/);
  cleanup(missing, keyed);

  const dbs = new TestDatabases(server!);
  const url = await dbs.create();
  const dir = masterDir(s3Yaml(bucket.endpoint));
  writeBuilder(join(dir, 'config'), 'art', BUILDER);
  const m = await testMaster({ art: BUILDER }, { storeUrl: url, dir });
  const wd = tempDir('s3w');
  t.after(async () => { await m.close(); await dbs.dropAll(); cleanup(m.dataDir, wd); });
  const store = await openStore(url);
  const token = await createWorkerToken(store, 's3-w2', []);
  await store.close();
  const worker = await startWorker({ preferences: { when: 'always' }, idleSource: 'none', master: m.url, token, dataDir: wd, executor: 'host', labels: [], log: () => undefined });
  t.after(() => worker.close());
  // The S3 service goes away: the artifact is refused, naming the bucket; the verified file stays on the master's disk.
  await bucket.s3.close();
  const id = await m.force('art');
  await m.waitFinished(id, 60_000);
  const log = await fetch(`${m.url}/api/v1/builds/${id}/log`).then((r) => r.text());
  assert.match(log, /\*\*\* artifact a\.txt refused: cannot store it in s3:\/\/crowdbake-test\/farm\/ at http:\/\/127\.0\.0\.1:\d+ \(3 tries\): .*\*\*\*/);
  assert.deepEqual(await m.get(`/api/v1/builds/${id}/artifacts`), [], 'not listed');
  assert.deepEqual(readdirSync(join(m.dataDir, 'artifacts', String(id)), { recursive: true }).map(String).filter((f) => f.endsWith('a.txt')), ['a.txt'], 'the file is kept');
});
