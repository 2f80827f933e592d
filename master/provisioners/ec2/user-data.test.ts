import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Ec2ProvisionerConfigSchema } from '../../config/ec2-config.js';
import { renderUserData } from './user-data.js';

const config = (extra: Record<string, unknown> = {}) => Ec2ProvisionerConfigSchema.parse({
  name: 'burst', type: 'ec2', region: 'eu-west-1', ami: 'ami-0123456789abcdef0', instanceTypes: ['t3.small'], labels: ['linux', 'big'], ...extra,
});
const input = { worker: 'burst-0a1b2c3d', masterUrl: 'wss://farm.example.org:8585/api/v1/worker', credential: 'cbw1.burst-0a1b2c3d.S3cr3t_-x', expiresAt: '2026-12-03T08:00:00.000Z', labels: ['linux', 'big'], farmId: 'farm-0123456789abcdef' };

test('user-data: the default install step is npm install -g of install.package; the worker gets the credential in its environment only, and the pin', () => {
  const text = renderUserData(config({ install: { package: 'crowdbake@1.2.3' } }), { ...input, pin: `sha256:${'ab'.repeat(32)}` });
  assert.match(text, /^#!\/bin\/sh\n/);
  assert.match(text, /npm install -g --no-fund --no-audit 'crowdbake@1\.2\.3'/);
  assert.match(text, /apt-get install -y -q nodejs npm podman/);
  assert.equal(text.split('cbw1.').length - 1, 1, 'the credential appears once, in the environment');
  assert.match(text, /expires unused at 2026-12-03T08:00:00\.000Z/);
  assert.equal(spawnSync('/bin/sh', ['-n'], { input: text }).status, 0, 'sh -n: the script parses');
});

test('user-data run by a real /bin/sh: install.script replaces the install step, and crowdbake gets exactly the worker\'s arguments and credential', () => {
  const dir = mkdtempSync(join(tmpdir(), 'crowdbake-userdata-'));
  try {
    const fake = join(dir, 'crowdbake');
    writeFileSync(fake, `#!/bin/sh\nprintf '%s\\n' "$@" > "${dir}/argv"\nprintf '%s' "$CROWDBAKE_WORKER_TOKEN" > "${dir}/token"\n`, { mode: 0o755 });
    const text = renderUserData(config({ install: { script: `echo installing > "${dir}/installed"\nexport PATH="${dir}:$PATH"` }, executors: ['container'] }), { ...input, pin: `sha256:${'ab'.repeat(32)}` });
    assert.ok(!text.includes('npm install'), 'no default install with install.script');
    const r = spawnSync('/bin/sh', ['-c', text], { env: { PATH: '/usr/bin:/bin', HOME: dir }, encoding: 'utf8' });
    assert.equal(r.status, 0, r.stderr);
    assert.equal(readFileSync(join(dir, 'installed'), 'utf8'), 'installing\n');
    assert.deepEqual(readFileSync(join(dir, 'argv'), 'utf8').trim().split('\n'), [
      'worker', '--master', input.masterUrl, '--name', input.worker, '--when', 'always', '--idle-source', 'none', '--executor', 'container',
      '--labels', 'linux,big', '--pin', `sha256:${'ab'.repeat(32)}`, '--interruption-url', 'http://169.254.169.254',
    ]);
    assert.equal(readFileSync(join(dir, 'token'), 'utf8'), input.credential);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});
