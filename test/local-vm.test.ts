import { test } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import { release } from 'node:os';
import { join } from 'node:path';
import type { WorkerView } from '../protocol/api.js';
import { localVmGuestBuilder } from '../cli/local-vm-guest.js';
import { defaultCacheDir } from '../worker/executors/detect.js';
import { cleanup, tempDir, testMaster, until } from './helpers/cluster.js';

// Slow: a `local-vm` latent worker. Queued work boots a qemu microvm on this host (TCG when
// there is no KVM); the guest mounts the host's /usr, node and this checkout read-only over 9p,
// runs `crowdbake worker` and connects with its token through QEMU's user network; the build
// runs inside the guest's own kernel; after the idle time the VM is powered off.
test('local-vm: queued work boots a VM whose worker connects, builds, and is stopped when idle', { timeout: 8 * 60_000 }, async (t) => {
  const dir = tempDir('local-vm');
  t.after(() => cleanup(dir));
  const m0 = await testMaster({
    invm: 'requires: { labels: [vm], executor: host }\nsteps:\n  - run: uname -r; ip -4 addr show eth0 2>/dev/null | grep -o "inet [0-9.]*" || cat /proc/net/fib_trie | grep -m1 10.0.2.15; echo "built in a VM"\n',
  }, { dir });
  await m0.close();
  writeFileSync(join(dir, 'config', 'crowdbake.yml'), `provisioners:
  - name: vm1
    type: local-vm
    labels: [vm]
    memory: 1g
    cpus: 2
    idleTimeout: 3s
    startTimeout: 10m
`);
  const m = await testMaster({}, { dir, localVmGuest: localVmGuestBuilder(join(defaultCacheDir(), 'local-vm')) });
  t.after(() => m.close());
  const began = Date.now();
  const id = await m.force('invm');
  const build = await m.waitFinished(id, 6 * 60_000);
  const took = Date.now() - began;
  const vmDir = join(m.dataDir, 'provisioners', 'vm1.vm');
  const log = await (await fetch(`${m.url}/api/v1/builds/${id}/log`)).text();
  const consoleLog = () => (existsSync(join(vmDir, 'console.log')) ? readFileSync(join(vmDir, 'console.log'), 'utf8') : '(no console log)');
  assert.equal(build.result, 'success', `${log}\n--- console ---\n${consoleLog()}`);
  assert.equal(build.worker, 'vm1');
  assert.match(log, /built in a VM/);
  const guestKernel = /^(\d+\.\d+\.\d+-\d+-amd64)$/m.exec(log)?.[1];
  assert.ok(guestKernel, `the guest printed Debian's amd64 kernel release: ${log}`);
  assert.notEqual(guestKernel, release(), 'the step ran under the guest kernel, not the host one');
  assert.match(log, /10\.0\.2\.15/, 'the guest is on QEMU\'s user network');
  console.log(`local-vm: force -> build finished in ${(took / 1000).toFixed(1)} s (VM boot, worker start and build, TCG unless KVM)`);

  const pid = Number(readFileSync(join(vmDir, 'qemu.pid'), 'utf8'));
  assert.match(readFileSync(`/proc/${pid}/cmdline`, 'utf8'), /crowdbake-local-vm-vm1/);
  await until('the idle VM to be stopped', () => !existsSync(`/proc/${pid}`) || /zombie|\(Z\)/.test(safeRead(`/proc/${pid}/stat`)), 60_000);
  await until('the master to see vm1 offline', async () => (await m.get<WorkerView[]>('/api/v1/workers')).find((w) => w.name === 'vm1')?.connected === false);
  assert.equal(existsSync(join(vmDir, 'cfg', 'run')), false, 'the file holding the token is removed with the VM');
});

function safeRead(f: string): string {
  try { return readFileSync(f, 'utf8'); } catch { return ''; }
}

test('local-vm: bad settings are refused with file, line and key', async () => {
  const dir = tempDir('local-vm-bad');
  try {
    const m = await testMaster({}, { dir });
    await m.close();
    writeFileSync(join(dir, 'config', 'crowdbake.yml'), 'provisioners:\n  - name: vm1\n    type: local-vm\n    share: [relative/dir]\n');
    await assert.rejects(testMaster({}, { dir }), /crowdbake\.yml:4:\d+: provisioners\.0\.share\.0: must be an absolute path/);
    writeFileSync(join(dir, 'config', 'crowdbake.yml'), 'provisioners:\n  - name: vm1\n    type: local-vm\n    executors: [container]\n');
    await assert.rejects(testMaster({}, { dir }), /crowdbake\.yml:4:\d+: provisioners\.0\.executors\.0: /);
    writeFileSync(join(dir, 'config', 'crowdbake.yml'), 'provisioners:\n  - name: vm1\n    type: cloud\n');
    await assert.rejects(testMaster({}, { dir }), /crowdbake\.yml:3:\d+: provisioners\.0\.type: /);
  } finally {
    cleanup(dir);
  }
});
