import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';

// A single master on SQLite does not load what only other set-ups need: the AWS SDK
// (`artifacts: { s3 }`, `ec2` provisioners) and pg (`--store postgres://`). Together they were
// about 46 MiB of an idle master's 128 MiB RSS (bench/README.md). A child process starts and
// stops a master with a resolve hook that writes down every module the loader resolves.

const HOOKS = `import { appendFileSync } from 'node:fs';
export async function resolve(specifier, context, next) {
  const r = await next(specifier, context);
  appendFileSync(process.env.RESOLVED_LOG, r.url + '\\n');
  return r;
}
`;

function resolvedBy(dir: string, crowdbakeYml: string | null): string[] {
  const config = join(dir, 'config');
  mkdirSync(join(config, 'builders'), { recursive: true });
  if (crowdbakeYml !== null) writeFileSync(join(config, 'crowdbake.yml'), crowdbakeYml);
  writeFileSync(join(dir, 'hooks.mjs'), HOOKS);
  const log = join(dir, 'resolved.log');
  writeFileSync(log, '');
  const master = pathToFileURL(join(import.meta.dirname, 'master.js')).href;
  const script = `import { register } from 'node:module';
register(${JSON.stringify(pathToFileURL(join(dir, 'hooks.mjs')).href)});
const { startMaster } = await import(${JSON.stringify(master)});
const m = await startMaster({ configDir: ${JSON.stringify(config)}, dataDir: ${JSON.stringify(join(dir, 'data'))}, host: '127.0.0.1', port: 0 });
await m.close();`;
  const r = spawnSync(process.execPath, ['--input-type=module', '-e', script], { encoding: 'utf8', env: { ...process.env, RESOLVED_LOG: log, AWS_ACCESS_KEY_ID: 'unused', AWS_SECRET_ACCESS_KEY: 'unused', AWS_EC2_METADATA_DISABLED: 'true' }, timeout: 60_000 });
  assert.equal(r.status, 0, r.stderr);
  return readFileSync(log, 'utf8').trim().split('\n');
}

const AWS = /\/node_modules\/@aws-sdk\//;
const PG = /\/node_modules\/(pg|pg-[a-z-]+)\//;

test('a single master on SQLite loads neither the AWS SDK nor pg; an ec2 provisioner loads the EC2 client', (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'crowdbake-modules-'));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  const plain = resolvedBy(join(dir, 'plain'), null);
  // The hook sees the master's own static imports (a check that it works at all).
  assert.ok(plain.some((u) => u.includes('/node_modules/prom-client/')), 'the hook saw prom-client');
  assert.deepEqual(plain.filter((u) => AWS.test(u)), [], 'no @aws-sdk module');
  assert.deepEqual(plain.filter((u) => PG.test(u)), [], 'no pg module');

  const cloud = resolvedBy(join(dir, 'cloud'), `provisioners:
  - name: burst
    type: ec2
    region: eu-west-1
    ami: ami-0123456789abcdef0
    endpoint: http://127.0.0.1:9
    labels: [cloud]
    instanceTypes: [t3.small]
    subnet: subnet-0abc
    securityGroups: [sg-0abc]
`);
  assert.ok(cloud.some((u) => u.includes('/node_modules/@aws-sdk/client-ec2/')), 'an ec2 provisioner loads the EC2 client');
  assert.deepEqual(cloud.filter((u) => PG.test(u)), [], 'still no pg module');
});
