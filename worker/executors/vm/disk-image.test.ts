import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, test } from 'node:test';
import { VmExecutor } from './vm.js';

// The qcow2-backing-file attack without booting: a build's image names a secret file of the
// volunteer as its backing file (or external data file); the vm executor is given it as a
// base and must refuse it before QEMU opens it, without the secret in the error.

const root = mkdtempSync(join(tmpdir(), 'crowdbake-diskimg-'));
after(() => rmSync(root, { recursive: true, force: true }));
const home = join(root, 'home');
const bases = join(root, 'bases');
mkdirSync(join(home, '.ssh'), { recursive: true });
mkdirSync(bases);
const secretText = `PRIVATE-KEY-${process.pid}`;
const secret = join(home, '.ssh', 'id_ed25519');
writeFileSync(secret, `${secretText}\n`.padEnd(65536, '\n'));

function executor(): VmExecutor {
  return new VmExecutor({ ownerId: `diskimg-${process.pid}`, cacheDir: join(root, 'vm'), basesDir: bases });
}

test('disk images with a backing file or an external data file are refused before QEMU, naming why; the secret is not shown', async () => {
  execFileSync('qemu-img', ['create', '-q', '-f', 'qcow2', '-b', secret, '-F', 'raw', join(bases, 'evil.qcow2')]);
  execFileSync('qemu-img', ['create', '-q', '-f', 'qcow2', '-o', `data_file=${secret},data_file_raw=on`, join(bases, 'datafile.qcow2'), '64K']);
  execFileSync('qemu-img', ['create', '-q', '-f', 'qcow2', join(bases, 'qcow-named-raw.img'), '1M']);
  execFileSync('qemu-img', ['create', '-q', '-f', 'vmdk', join(bases, 'vmdk.qcow2'), '1M']);
  execFileSync('qemu-img', ['create', '-q', '-f', 'qcow2', join(bases, 'good.qcow2'), '1M']);
  symlinkSync(secret, join(bases, 'link.img'));
  const ex = executor();
  const open = (base: string): Promise<unknown> => ex.open({ id: `di${process.pid}`, workdir: root, environment: { base, setup: [] }, limits: {}, network: false });
  const cases: Array<[string, RegExp]> = [
    ['vm:evil.qcow2', /base "vm:evil.qcow2" is refused: it has a backing file/],
    ['vm:datafile.qcow2', /base "vm:datafile.qcow2" is refused: it has an external data file/],
    ['vm:qcow-named-raw.img', /is refused: it is qcow2, and its name says raw/],
    ['vm:vmdk.qcow2', /is refused: it is vmdk; only raw and qcow2 images are booted/],
    ['vm:link.img', /is a symbolic link that leads out of it/],
    ['vm:missing.qcow2', /there is no missing.qcow2 in the bases directory/],
    [`vm:${secret}.img`, /names a path on the worker/],
  ];
  for (const [base, why] of cases) {
    for (const call of [() => ex.prepare({ base, setup: [] }, () => {}), () => open(base)]) {
      await assert.rejects(call(), (e: Error) => {
        assert.match(e.message, why, base);
        assert.ok(!e.message.includes(secretText), 'the secret is not in the message');
        return true;
      });
    }
  }
});
