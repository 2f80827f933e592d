import { test } from 'node:test';
import assert from 'node:assert/strict';
import { parseMasterConfig } from './master-config.js';

const base = `provisioners:
  - name: burst
    type: ec2
    region: eu-west-1
    ami: ami-0123456789abcdef0
    instanceTypes: [t3.large, m5.large]
`;
const errors = (text: string) => {
  const r = parseMasterConfig('/c/crowdbake.yml', text, { configDir: '/c' });
  return r.ok ? [] : r.errors;
};

test('ec2: a minimal provisioner gets the documented defaults', () => {
  const r = parseMasterConfig('/c/crowdbake.yml', base, { configDir: '/c' });
  assert.ok(r.ok, r.ok ? '' : r.errors.join('\n'));
  const p = r.config.provisioners[0]!;
  assert.equal(p.type, 'ec2');
  if (p.type !== 'ec2') return;
  assert.deepEqual([p.min, p.max, p.burstAfter, p.idleTimeout, p.bootGrace, p.reapEvery, p.credentialTtl, p.spot, p.onDemandFallback, p.metadataUrl, p.install.package],
    [0, 1, 600_000, 300_000, 600_000, 60_000, 900_000, false, true, 'http://169.254.169.254', 'crowdbake']);
});

test('ec2: AWS credentials in crowdbake.yml are refused, naming the SDK\'s standard chain', () => {
  for (const key of ['accessKeyId', 'secretAccessKey', 'sessionToken', 'credentials', 'aws_secret_access_key', 'profile']) {
    const [e] = errors(`${base}    ${key}: AKIAEXAMPLE\n`);
    assert.match(e ?? '', new RegExp(`crowdbake\\.yml:7:5: provisioners\\.0\\.${key}: AWS credentials never go in crowdbake\\.yml: the ec2 provisioner takes them from the AWS SDK's standard chain`), key);
  }
});

test('ec2: bad values are refused with file, line and key', () => {
  assert.match(errors(base.replace('    ami: ami-0123456789abcdef0\n', ''))[0] ?? '', /give an ami or a launchTemplate/);
  assert.match(errors(base.replace('    instanceTypes: [t3.large, m5.large]\n', ''))[0] ?? '', /instanceTypes: required with an ami/);
  assert.match(errors(`${base}    min: 3\n    max: 2\n`)[0] ?? '', /min must not be more than max/);
  assert.match(errors(base.replace('eu-west-1', 'Europe West'))[0] ?? '', /provisioners\.0\.region: must be a region name like eu-west-1/);
  assert.match(errors(`${base}    install: { package: "crowdbake; rm -rf /" }\n`)[0] ?? '', /install\.package: must be an npm package spec/);
  assert.match(errors(`${base}    budget: { hoursPerDay: -1 }\n`)[0] ?? '', /budget\.hoursPerDay/);
  assert.match(errors(`${base}    endpoint: ftp://x\n`)[0] ?? '', /provisioners\.0\.endpoint/);
});
