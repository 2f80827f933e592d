import { test } from 'node:test';
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { execFileSync } from 'node:child_process';
import { startWorker } from '../worker/agent.js';
import type { ArtifactView, BuildView, WorkerView } from '../protocol/api.js';
import { cleanup, tempDir, testMaster, until } from './helpers/cluster.js';

// A builder this project has never seen: a container step makes an artifact, a second one
// probes the sandbox from inside. Real master, real worker, real podman.
const SECRET_DIR = tempDir('host-secret');
const MARKER = join(SECRET_DIR, 'volunteer-private.txt');
writeFileSync(MARKER, 'the volunteer\'s private file\n');

const BUILDER = `
description: an artifact and a sandbox probe
requires: { executor: container }
environment: { base: busybox }
steps:
  - name: make
    run: |
      mkdir -p out
      printf 'crowdbake artifact %s\\n' "$GREETING" > out/pkg.txt
      echo "made out/pkg.txt"
    env: { GREETING: hello-from-the-container }
  - name: probe
    run:
      - /bin/sh
      - -c
      - |
        if [ -e ${MARKER} ]; then echo "HOST FILE VISIBLE"; exit 1; fi
        echo "host file not visible"
        if ls /root/.ssh 2>/dev/null; then echo "HOST HOME VISIBLE"; exit 1; fi
        ifaces=$(grep -c ':' /proc/net/dev)
        echo "network interfaces: $(tail -n +3 /proc/net/dev | cut -d: -f1 | tr -d ' ' | tr '\\n' ' ')"
        if tail -n +3 /proc/net/dev | cut -d: -f1 | grep -vq '^ *lo$'; then echo "NETWORK PRESENT"; exit 1; fi
        echo "only loopback"
artifacts: [out/*.txt]
limits: { time: 2m, memory: 128m }
`;

test('a container build runs end to end: log, artifact with sha256, sandbox holds', async (t) => {
  const m = await testMaster({ probe: BUILDER });
  const workDir = tempDir('worker');
  const worker = await startWorker({ preferences: { when: 'always' }, idleSource: 'none',
    master: m.url, token: await m.token('w1'), dataDir: workDir, executor: 'container', labels: [], log: () => undefined,
  });
  t.after(async () => { await worker.close(); await m.close(); cleanup(workDir, SECRET_DIR); });

  const id = await m.force('probe', { reason: 'e2e' });
  const build = await m.waitFinished(id, 90_000);
  const log = await (await fetch(`${m.url}/api/v1/builds/${id}/log`)).text();
  assert.equal(build.result, 'success', log);
  assert.equal(build.worker, 'w1');
  assert.deepEqual(build.steps.map((s) => [s.name, s.result, s.exitCode]), [['make', 'success', 0], ['probe', 'success', 0]]);
  assert.match(log, /made out\/pkg.txt/);
  assert.match(log, /^host file not visible$/m);
  assert.match(log, /^only loopback$/m);
  assert.doesNotMatch(log, /^(HOST FILE VISIBLE|HOST HOME VISIBLE|NETWORK PRESENT)$/m);

  const expected = 'crowdbake artifact hello-from-the-container\n';
  const sha = createHash('sha256').update(expected).digest('hex');
  const arts = await m.get<ArtifactView[]>(`/api/v1/builds/${id}/artifacts`);
  assert.deepEqual(arts, [{ name: 'pkg.txt', size: expected.length, sha256: sha, worker: 'w1' }]);
  const bytes = await (await fetch(`${m.url}/api/v1/builds/${id}/artifacts/pkg.txt`)).text();
  assert.equal(bytes, expected);

  const api = await m.get<BuildView>(`/api/v1/builds/${id}`);
  assert.equal(api.state, 'finished');
  for (const k of ['queuedAt', 'startedAt', 'finishedAt'] as const) assert.ok(!Number.isNaN(Date.parse(api[k] ?? '')), k);
  // No container is left behind (the one warm container made for the next build aside).
  assert.deepEqual(buildContainersLeft(), []);
  const workers = await m.get<WorkerView[]>('/api/v1/workers');
  assert.deepEqual(workers.map((w) => [w.name, w.connected, w.state, w.executors]), [['w1', true, 'idle', ['container']]]);
});

test('a failing container step fails the build with its exit code and stops later steps', async (t) => {
  const m = await testMaster({
    fails: `
requires: { executor: container }
steps:
  - { name: one, run: "echo about to fail; exit 3" }
  - { name: two, run: "echo should not run" }
`,
  });
  const workDir = tempDir('worker');
  const worker = await startWorker({ preferences: { when: 'always' }, idleSource: 'none', master: m.url, token: await m.token('w1'), dataDir: workDir, executor: 'container', labels: [], log: () => undefined });
  t.after(async () => { await worker.close(); await m.close(); cleanup(workDir); });
  const build = await m.waitFinished(await m.force('fails'), 60_000);
  assert.equal(build.result, 'failure');
  assert.deepEqual(build.steps.map((s) => [s.name, s.state, s.result, s.exitCode]), [['one', 'finished', 'failure', 3], ['two', 'pending', null, null]]);
  const log = await (await fetch(`${m.url}/api/v1/builds/${build.id}/log`)).text();
  assert.match(log, /about to fail/);
  assert.doesNotMatch(log, /should not run/);
});

test('the test-install stage runs in a fresh environment that holds only the artifacts', async (t) => {
  const m = await testMaster({
    pkg: `
requires: { executor: container }
steps:
  - name: build
    run: "mkdir -p dist && echo 'echo installed ok' > dist/tool.sh && echo secret > build-only.txt"
artifacts: [dist/*.sh]
test-install:
  steps:
    - name: check
      run: "ls -R /work; test ! -e build-only.txt && test ! -e dist && sh artifacts/tool.sh"
`,
  });
  const workDir = tempDir('worker');
  const worker = await startWorker({ preferences: { when: 'always' }, idleSource: 'none', master: m.url, token: await m.token('w1'), dataDir: workDir, executor: 'container', labels: [], log: () => undefined });
  t.after(async () => { await worker.close(); await m.close(); cleanup(workDir); });
  const build = await m.waitFinished(await m.force('pkg'), 60_000);
  const log = await (await fetch(`${m.url}/api/v1/builds/${build.id}/log`)).text();
  assert.equal(build.result, 'success', log);
  assert.deepEqual(build.steps.map((s) => [s.name, s.result]), [['build', 'success'], ['test-install: check', 'success']]);
  assert.match(log, /^installed ok$/m);
  assert.match(log, /1 artifact\(s\) in \/work\/artifacts of a fresh busybox environment/);
});

test('dpkg-buildpackage style: a step writes ../NAME.deb, the pattern ../*.deb collects it; nothing above the build dir, no symlink', async (t) => {
  // A stand-in for dpkg-buildpackage (a real one needs a debootstrap base with dpkg-dev):
  // busybox writes the .deb to the source tree's parent, as Debian's build daemons expect.
  const m = await testMaster({
    deb: `
requires: { executor: container }
steps:
  - name: build
    run: |
      echo "cwd $(pwd)"
      echo 'fake deb' > ../hello_1.0_all.deb
      echo 'changes' > ../hello_1.0_amd64.changes
      ln -s /etc/passwd ../passwd.deb
      test -e /work/../hello_1.0_all.deb || echo "not at /"
      echo "work and src are one: $(cat /work/../build/hello_1.0_all.deb 2>/dev/null || ls /work)"
      df -k .. | tail -n 1 | sed 's/^/parent fs /'
artifacts: ["../*.deb", "../../*", "../../../etc/*"]
limits: { disk: 32m }
`,
  });
  const workDir = tempDir('worker');
  const worker = await startWorker({ preferences: { when: 'always' }, idleSource: 'none', master: m.url, token: await m.token('w1'), dataDir: workDir, executor: 'container', labels: [], log: () => undefined });
  t.after(async () => { await worker.close(); await m.close(); cleanup(workDir); });
  const build = await m.waitFinished(await m.force('deb'), 60_000);
  const log = await (await fetch(`${m.url}/api/v1/builds/${build.id}/log`)).text();
  assert.equal(build.result, 'success', log);
  assert.match(log, /^cwd \/build\/src$/m);
  const arts = await m.get<ArtifactView[]>(`/api/v1/builds/${build.id}/artifacts`);
  assert.deepEqual(arts.map((a) => a.name), ['hello_1.0_all.deb']);
  assert.equal(await (await fetch(`${m.url}/api/v1/builds/${build.id}/artifacts/hello_1.0_all.deb`)).text(), 'fake deb\n');
  if (process.getuid?.() === 0) {
    // `..` is the build's own directory, inside the disk limit (an ext4 of 32 MiB), not the worker's disk.
    const total = Number(/^parent fs \S+\s+(\d+)/m.exec(log)?.[1]);
    assert.ok(total > 0 && total <= 32 * 1024, log);
  }
  // Removed with the build (right after the master heard the end): nothing left in the work root, no container left.
  const left = (): string => execFileSync('sh', ['-c', `ls -A ${join(workDir, 'work')} 2>/dev/null || true`]).toString().trim();
  await until('the build\'s directory and containers to be removed', () => left() === '' && buildContainersLeft().length === 0, 30_000).catch(() => undefined);
  assert.equal(left(), '');
  assert.deepEqual(buildContainersLeft(), []);
});

/**
 * The worker's containers but its warm one (at most one, made ahead for the next build of the
 * same environment: worker/executors/warm-pool.ts), which is not a leftover.
 */
function buildContainersLeft(): string[] {
  const names = execFileSync('podman', ['ps', '-a', '--filter', 'label=crowdbake.owner=w-w1', '--format', '{{.Names}}']).toString().split('\n').filter(Boolean);
  const warm = names.filter((n) => n.startsWith('crowdbake-warm-'));
  assert.ok(warm.length <= 1, `at most one warm container: ${warm.join(', ')}`);
  return names.filter((n) => !warm.includes(n));
}
