import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync, spawn, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { cpSync, mkdirSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { BuildView } from '../protocol/api.js';
import { ensureGuestAssets } from '../worker/executors/vm/assets.js';
import { CLI, cleanup, tempDir, testMaster, until, writeBuilder, type TestMaster } from './helpers/cluster.js';

// The escape attempts of sandbox-escape.test.ts, against the VM executor: a real master, a
// real worker process (`--executor vm`, its own HOME holding a secret), real QEMU (TCG here,
// so the attempts share one build and one boot). Each attempt prints "ESCAPED: …" when it gets
// through; the assertions also check from the host's side. Plus the qcow2 backing-file attack
// end to end: a builder whose vm: base is a qcow2 in the volunteer's bases dir with a backing
// file = a secret in the worker's HOME.

const home = tempDir('volunteer-home-vm');
const secretText = `volunteer-secret-${randomBytes(8).toString('hex')}`;
const secretFile = join(home, 'secret.txt');
writeFileSync(secretFile, `${secretText}\n`, { mode: 0o600 });
// The disk-image secret: raw bytes a guest would read from /dev/vda if QEMU followed the backing file.
mkdirSync(join(home, '.ssh'), { mode: 0o700 });
const keyFile = join(home, '.ssh', 'id_ed25519');
writeFileSync(keyFile, Buffer.concat([Buffer.from(`${secretText}-key\n`), Buffer.alloc(1024 * 1024 - secretText.length - 5)]), { mode: 0o600 });
const victimDir = tempDir('victim-vm');
const victim = join(victimDir, 'victim.txt');
writeFileSync(victim, 'untouched\n');
const victimBefore = statSync(victim);
const dataDir = tempDir('escape-vm-worker');
const basesDir = join(dataDir, 'bases');
mkdirSync(basesDir);
// Made the way an attacker's build would make it (qemu-img on a disk it controls), placed where
// the volunteer keeps bases: the name is plain, only the file's header points elsewhere.
execFileSync('qemu-img', ['create', '-q', '-f', 'qcow2', '-b', keyFile, '-F', 'raw', join(basesDir, 'evil.qcow2')]);

const env = (vars: Record<string, string>): string => `{ ${Object.entries(vars).map(([k, v]) => `${k}: ${JSON.stringify(v)}`).join(', ')} }`;
const step = (name: string, vars: Record<string, string>, script: string): string =>
  `  - name: ${name}\n    env: ${env(vars)}\n    run: |\n${script.trim().split('\n').map((l) => `      ${l}`).join('\n')}\n`;

const BUILDERS: Record<string, string> = {
  qcow2: `requires: { executor: vm }\nenvironment: { base: "vm:evil.qcow2" }\nsteps:\n${step('dump', {}, `
    echo dump-ran
    dd if=/dev/vda bs=1k count=1 2>/dev/null
  `)}`,
};

let m: TestMaster;
let worker: ChildProcess;
let workerOutput = '';

const logOf = (id: number): Promise<string> => fetch(`${m.url}/api/v1/builds/${id}/log`).then((r) => r.text());
async function build(name: string, timeoutMs = 420_000): Promise<{ build: BuildView; log: string }> {
  const b = await m.waitFinished(await m.force(name), timeoutMs);
  return { build: b, log: await logOf(b.id) };
}

describe('sandbox escape attempts on the vm executor (real QEMU)', { timeout: 900_000 }, () => {
  before(async () => {
    // The guest kernel and initramfs: fetched once into the cache vm.test.ts uses, then copied
    // into this worker's data dir (DATA/vm), so the worker does not download them again.
    const shared = join(tmpdir(), 'crowdbake-vm-test-cache');
    await ensureGuestAssets({ cacheDir: shared }, () => {});
    cpSync(shared, join(dataDir, 'vm'), { recursive: true });
    m = await testMaster(BUILDERS);
    const token = await m.token('escape-vm');
    worker = spawn(process.execPath, [CLI, 'worker', '--master', m.url, '--token', token, '--data', dataDir, '--when', 'always',
      '--executor', 'vm', '--builds', '1', '--idle-source', 'none'], { stdio: ['ignore', 'pipe', 'pipe'], env: { ...process.env, HOME: home } });
    worker.stdout!.on('data', (c: Buffer) => { workerOutput += c.toString(); });
    worker.stderr!.on('data', (c: Buffer) => { workerOutput += c.toString(); });
    await until('the worker to connect', async () => (await m.get<{ connected: boolean }[]>('/api/v1/workers')).some((w) => w.connected), 120_000)
      .catch((e: Error) => { throw new Error(`${e.message}\n${workerOutput}`); });
  }, { timeout: 600_000 });
  after(async () => {
    worker?.kill('SIGTERM');
    await new Promise((r) => { if (!worker || worker.exitCode !== null) r(null); else worker.once('exit', r); });
    await m?.close();
    cleanup(home, victimDir, dataDir);
  });

  test('one VM build: the home by path, $HOME and search; writes outside /work; the loopback control API and master; a symlinked artifact', async () => {
    const control = JSON.parse(readFileSync(join(dataDir, 'control.json'), 'utf8')) as { url: string; secret: string };
    const controlPort = new URL(control.url).port;
    const masterPort = new URL(m.url).port;
    const steps = [
      step('read-home', { SECRET_FILE: secretFile, SECRET_HOME: home, KEY: keyFile }, `
        echo "read-home: attempted"
        for f in "$SECRET_FILE" "$SECRET_HOME/secret.txt" "$KEY" /root/secret.txt "$HOME/secret.txt"; do
          if cat "$f" 2>/dev/null | grep -q volunteer-secret; then echo "ESCAPED: read $f"; fi
        done
        if [ -n "$(find / \\( -path /proc -o -path /sys \\) -prune -o -name secret.txt -print 2>/dev/null)" ]; then echo "ESCAPED: found secret.txt"; fi
        for d in /dev/vd? /dev/sd? /dev/hd?; do
          [ -b "$d" ] && dd if="$d" bs=64k 2>/dev/null | grep -q volunteer-secret && echo "ESCAPED: the secret on $d"
        done
        ln -s "$SECRET_FILE" /work/secret-link.txt
        echo "home: not readable"
      `),
      step('write-outside', { VICTIM: victim, DATA: dataDir }, `
        for p in "$VICTIM" /work/../victim.txt "$DATA/work/../victim.txt"; do
          mkdir -p "$(dirname "$p")" 2>/dev/null
          if (echo pwned > "$p") 2>/dev/null; then echo "wrote $p (in the guest)"; else echo "refused $p"; fi
        done
        ln -s "$VICTIM" /work/victim-link
        mkdir -p /work/sub && ln -s "$(dirname "$VICTIM")" /work/sub/dirlink
        echo "write-outside: done"
      `),
      step('reach', { CONTROL: controlPort, MASTER: masterPort }, `
        echo "interfaces: $(tail -n +3 /proc/net/dev | cut -d: -f1 | tr -d ' ' | tr '\\n' ' ')"
        for port in "$CONTROL" "$MASTER"; do
          for host in 127.0.0.1 localhost 10.0.2.2 10.0.2.3 10.0.2.15 10.88.0.1; do
            if wget -q -T 2 -O /dev/null "http://$host:$port/" 2>/dev/null; then echo "ESCAPED: reached $host:$port"; fi
            if nc -w 1 "$host" "$port" < /dev/null 2>/dev/null; then echo "ESCAPED: connected to $host:$port"; fi
          done
        done
        wget -q -T 3 -O /dev/null http://1.1.1.1/ 2>/dev/null && echo "ESCAPED: reached 1.1.1.1"
        echo "reach: nothing answered"
      `),
    ];
    writeBuilder(m.configDir, 'escape', `requires: { executor: vm }\nenvironment: { base: "vm:busybox" }\nartifacts: [secret-link.txt, victim-link]\nsteps:\n${steps.join('')}`);
    await until('the master to load the escape builder', async () =>
      (await m.get<{ name: string }[]>('/api/v1/builders')).some((x) => x.name === 'escape'), 10_000);
    const { build: b, log } = await build('escape');
    // Delivered: every attempt ran in the guest.
    assert.match(log, /^read-home: attempted$/m, log);
    assert.match(log, /^write-outside: done$/m, log);
    assert.match(log, /^reach: nothing answered$/m, log);
    // Failed: nothing got through, nothing leaked.
    assert.equal(b.result, 'success', `${log}\n${workerOutput}`);
    assert.doesNotMatch(log, /^ESCAPED/m, log);
    assert.ok(!log.includes(secretText), 'the volunteer\'s secret is in the log');
    assert.ok(!log.includes(control.secret), 'the control API secret is in the log');
    assert.match(log, /^home: not readable$/m);
    assert.match(log, /^interfaces: lo $/m, 'network off: only lo in the guest');
    assert.equal(readFileSync(victim, 'utf8'), 'untouched\n');
    const now = statSync(victim);
    assert.deepEqual([now.mtimeMs, now.mode, now.size], [victimBefore.mtimeMs, victimBefore.mode, victimBefore.size],
      'the symlinks the guest left in /work were not followed when the worker took the workdir back');
    // The symlinks are not uploaded as artifacts, so the worker did not follow them either.
    assert.deepEqual(await m.get(`/api/v1/builds/${b.id}/artifacts`), []);
  });

  test('a vm: base in the bases dir whose qcow2 backing file is the volunteer\'s key: the build fails naming why, the key is not read', async () => {
    // The planted image is the attack: QEMU would read the key as the disk.
    const info = JSON.parse(execFileSync('qemu-img', ['info', '--output=json', '-U', join(basesDir, 'evil.qcow2')]).toString()) as { 'backing-filename'?: string };
    assert.equal(info['backing-filename'], keyFile);
    const { build: b, log } = await build('qcow2');
    const everything = `${JSON.stringify(b)}\n${log}`;
    // Delivered: the worker took the build and got as far as checking its disk image.
    assert.match(everything, /vm:evil\.qcow2/, everything);
    assert.notEqual(b.result, 'success', everything);
    assert.match(everything, /has a backing file/, everything);
    assert.doesNotMatch(log, /^dump-ran$/m, 'the step ran: QEMU booted the image');
    assert.ok(!everything.includes(secretText), 'the key is in the build');
    assert.ok(!workerOutput.includes(secretText), 'the key is in the worker\'s output');
  });
});
