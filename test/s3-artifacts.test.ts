import { test } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, mkdirSync, readdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import S3rver from 's3rver';
import { S3Objects } from '../master/object-store/s3-objects.js';
import { artifactKey, logKey } from '../master/object-store/object-backend.js';
import { connectPostgres } from '../master/store/postgres-connect.js';
import { ListObjectsV2Command, S3Client } from '@aws-sdk/client-s3';
import { gunzipSync } from 'node:zlib';
import { startMaster } from '../master/master.js';
import { openStore } from '../master/store/open-store.js';
import { NO_TEST_POSTGRES, TEST_POSTGRES_ENV, TestDatabases } from '../master/store/postgres-test-db.js';
import { createWorkerToken } from '../master/tokens.js';
import { startWorker } from '../worker/agent.js';
import { cleanup, tempDir, testMaster, until, writeBuilder } from './helpers/cluster.js';

// Artifacts in an S3-compatible bucket (artifacts: { s3 } in crowdbake.yml; master/object-store/s3-objects.ts).
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
  const objects = new S3Objects({ bucket: 'crowdbake-test', prefix: 'farm/', region: 'us-east-1', endpoint: bucket.endpoint, forcePathStyle: true });
  t.after(() => objects.close());
  assert.equal(objects.fullKey(artifactKey(id, name, null)), `farm/artifacts/${id}/${encodeURIComponent(name)}`);
  const body = await objects.get(artifactKey(id, name, null));
  assert.ok(body);
  body.resume();

  // Retention (the lease holder's job): everything stored before "now + 1 s" goes.
  assert.equal(await objects.removeOlderThan('artifacts', Date.now() + 1000), 1);
  assert.equal(await objects.get(artifactKey(id, name, null)), null);
  const gone = await fetch(`${b.url}/api/v1/builds/${id}/artifacts/${encodeURIComponent(name)}`);
  assert.equal(gone.status, 404);
  await gone.text();
});

test('s3 artifacts: keys are the master\'s own — names a worker could send cannot leave the build\'s place in the bucket', () => {
  const objects = new S3Objects({ bucket: 'b-b', prefix: 'p/', region: 'us-east-1', forcePathStyle: true });
  try {
    for (const name of ['../x', '/etc/passwd', 'a/../../b', 'q?x=1', 'h#frag', 'ünï/cödé', 'x'.repeat(300)]) {
      const key = objects.fullKey(artifactKey(7, name, null));
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

// Finished logs in the bucket (master/log-archive.ts). The log's text is a worker's: hostile
// lines (a `../` path, a key-like string, binary bytes, a long line) must change nothing but
// the object's body — the key is the master's build id.
const LOG_BUILDER = 'requires: { executor: host }\nsteps:\n  - run: |\n      echo "first line of $CROWDBAKE_BUILD_ID"\n      echo "../../../etc/passwd logs/1.log.gz farm/logs/../x"\n      printf "\\001\\002\\377 binary\\n"\n      head -c 200000 /dev/zero | tr "\\0" "y"; echo\n      echo "last line"\n';

async function logRows(url: string, id: number): Promise<number> {
  const c = await connectPostgres(url, () => undefined);
  try {
    const r = await c.query<{ n: string }>('SELECT count(*) AS n FROM log_chunks WHERE build_id = $1', [id]);
    return Number(r.rows[0]!.n);
  } finally {
    await c.end();
  }
}

async function logObjects(endpoint: string): Promise<string[]> {
  const s3 = new S3Client({ region: 'us-east-1', endpoint, forcePathStyle: true });
  try {
    const r = await s3.send(new ListObjectsV2Command({ Bucket: 'crowdbake-test', Prefix: 'farm/logs/' }));
    return (r.Contents ?? []).map((o) => o.Key!).sort();
  } finally {
    s3.destroy();
  }
}

async function twoS3Masters(t: { after: (f: () => Promise<void> | void) => void }, endpoint: string, worker: string) {
  const dbs = new TestDatabases(server!);
  const url = await dbs.create();
  const a = await testMaster({ talk: LOG_BUILDER }, { storeUrl: url, dir: masterDir(s3Yaml(endpoint)) });
  const b = await testMaster({ talk: LOG_BUILDER }, { storeUrl: url, dir: masterDir(s3Yaml(endpoint)) });
  const wd = tempDir('s3w');
  let aOpen = true;
  const closeA = async () => { if (aOpen) { aOpen = false; await a.close(); } };
  t.after(async () => { await closeA(); await b.close(); await dbs.dropAll(); cleanup(a.dataDir, b.dataDir, wd); });
  const store = await openStore(url);
  const token = await createWorkerToken(store, worker, []);
  await store.close();
  const w = await startWorker({ preferences: { when: 'always' }, idleSource: 'none', master: a.url, token, dataDir: wd, executor: 'host', labels: [], log: () => undefined });
  t.after(() => w.close());
  await until('the worker on A', async () => (await a.get<{ name: string; connected: boolean }[]>('/api/v1/workers')).some((x) => x.name === worker && x.connected));
  return { a, b, url, closeA };
}

test('s3 logs: a finished build\'s log is put in the bucket under its build id, dropped from PostgreSQL, and served whole by another master after the first is gone', { skip }, async (t) => {
  const bucket = await bucketServer(t);
  const { a, b, url, closeA } = await twoS3Masters(t, bucket.endpoint, 's3-log-w1');
  const id = await a.force('talk');
  assert.equal((await a.waitFinished(id, 30_000)).result, 'success');
  await until('the log in the bucket', async () => (await logObjects(bucket.endpoint)).includes(`farm/${logKey(id)}`));
  await until('the rows released', async () => (await logRows(url, id)) === 0);
  assert.deepEqual(await logObjects(bucket.endpoint), [`farm/logs/${id}.log.gz`], 'one object, under the build id: the log\'s text chose no key');

  const fromA = await fetch(`${a.url}/api/v1/builds/${id}/log`).then((r) => r.text());
  await closeA();
  const fromB = await fetch(`${b.url}/api/v1/builds/${id}/log`).then((r) => r.text());
  assert.equal(fromB, fromA);
  assert.match(fromB, new RegExp(`first line of ${id}\n`));
  assert.match(fromB, /\.\.\/\.\.\/\.\.\/etc\/passwd logs\/1\.log\.gz/);
  assert.match(fromB, /y{200000}\n/);
  assert.match(fromB, /last line\n/);
  // The object is the same text, gzip-compressed.
  const objects = new S3Objects({ bucket: 'crowdbake-test', prefix: 'farm/', region: 'us-east-1', endpoint: bucket.endpoint, forcePathStyle: true });
  t.after(() => objects.close());
  const body = await objects.get(logKey(id));
  const parts: Buffer[] = [];
  for await (const c of body!) parts.push(c as Buffer);
  assert.equal(gunzipSync(Buffer.concat(parts)).toString('utf8'), fromB);

  // Retention of logs (the lease holder's job) empties the bucket's logs/.
  assert.equal(await objects.removeOlderThan('logs', Date.now() + 1000), 1);
  assert.deepEqual(await logObjects(bucket.endpoint), []);
});

test('s3 logs: the bucket down when a build ends loses nothing — the log is served from PostgreSQL meanwhile, and put once the bucket is back', { skip }, async (t) => {
  const bucket = await bucketServer(t);
  const { a, b, url } = await twoS3Masters(t, bucket.endpoint, 's3-log-w2');
  const port = Number(new URL(bucket.endpoint).port);
  const seen: string[] = [];
  const writeError = console.error;
  console.error = (...args: unknown[]) => { seen.push(args.map(String).join(' ')); writeError(...args); };
  t.after(() => { console.error = writeError; });
  await bucket.s3.close();
  const id = await a.force('talk');
  assert.equal((await a.waitFinished(id, 30_000)).result, 'success');
  // A's put fails first (its warning names the build), whatever the timing.
  await until('the failed put', () => seen.some((l) => l.includes(`the log of build ${id} is not yet in s3://crowdbake-test/farm/`)), 30_000);
  const meanwhile = await fetch(`${b.url}/api/v1/builds/${id}/log`).then((r) => r.text());
  assert.match(meanwhile, /first line of .*last line\n/s, 'served whole while the bucket is down');
  assert.ok(await logRows(url, id) > 0, 'kept in PostgreSQL');
  // The same service comes back (same port, same files); A's next try puts the log.
  const again = new S3rver({ port, address: '127.0.0.1', silent: true, directory: bucket.dir });
  await again.run();
  t.after(() => again.close().catch(() => undefined));
  await until('the log in the bucket', async () => (await logObjects(bucket.endpoint)).includes(`farm/logs/${id}.log.gz`), 60_000);
  await until('the rows released', async () => (await logRows(url, id)) === 0);
  assert.equal(await fetch(`${b.url}/api/v1/builds/${id}/log`).then((r) => r.text()), meanwhile);
});
