import { test } from 'node:test';
import assert from 'node:assert/strict';
import type { BuildSpec, ExecutorKind } from '../protocol/build-spec.js';
import { assignmentRefusal, exceedsVolunteer, executorFor } from './assignment-check.js';

const spec = (over: Partial<BuildSpec> = {}): BuildSpec => ({
  builder: 'b', revision: null, source: null, executor: 'container', environment: { base: 'busybox', setup: [] },
  steps: [{ name: 's', run: 'true', env: {} }], artifacts: [], limits: {}, network: false, testInstall: null, ...over,
} as BuildSpec);
const here = (kinds: ExecutorKind[], over: { running?: boolean; memoryBytes?: number; diskBytes?: number } = {}) => ({
  executors: new Set(kinds), running: over.running ?? false,
  volunteerLimits: { ...(over.memoryBytes !== undefined ? { memoryBytes: over.memoryBytes } : {}), ...(over.diskBytes !== undefined ? { diskBytes: over.diskBytes } : {}) },
});

test('an assignment this agent can run is taken; `any` runs in a container', () => {
  assert.equal(assignmentRefusal(spec(), here(['container'])), null);
  assert.equal(executorFor(spec({ executor: 'any' })), 'container');
  assert.equal(assignmentRefusal(spec({ executor: 'any' }), here(['container'])), null);
  assert.deepEqual(assignmentRefusal(spec({ executor: 'any' }), here(['host'])), { message: 'this worker has no any executor', volunteer: false });
});

test('a master\'s routine mistakes are answered, not logged as refusals: an executor this worker lacks, a build already running here', () => {
  assert.deepEqual(assignmentRefusal(spec({ executor: 'vm' }), here(['container', 'host'])), { message: 'this worker has no vm executor', volunteer: false });
  assert.deepEqual(assignmentRefusal(spec(), here(['container'], { running: true })), { message: 'build already running here', volunteer: false });
});

test('a hostile master\'s bases are refused before anything touches the host — in the build and in its test-install stage', () => {
  const hostile = [
    'rootfs:../../etc/shadow.tar', 'rootfs:/etc/passwd.tar', 'vm:../../../root/.ssh/id_rsa.img', 'vm:file:///etc/shadow.qcow2',
    'image:docker-daemon:alpine', 'image:oci-archive:/etc/shadow', 'image:--privileged', 'debootstrap:bookworm@file:///etc',
    'debootstrap:bookworm@http://user:pw@mirror.example/debian', 'debootstrap:$(reboot)', 'none', '',
  ];
  for (const base of hostile) {
    const r = assignmentRefusal(spec({ environment: { base, setup: [] } }), here(['container']));
    assert.ok(r?.volunteer, `refused: ${JSON.stringify(base)}`);
    assert.match(r.message, /^base "/, `the refusal names the base: ${r.message}`);
    const inTest = assignmentRefusal(spec({ testInstall: { environment: { base, setup: [] }, steps: [{ name: 't', run: 'true', env: {} }] } } as Partial<BuildSpec>), here(['container']));
    assert.ok(inTest?.volunteer, `refused in the test-install stage: ${JSON.stringify(base)}`);
  }
  for (const base of ['busybox', 'vm:busybox', 'debootstrap:bookworm', 'debootstrap:bookworm@https://deb.debian.org/debian', 'image:docker.io/library/debian:12', 'rootfs:base.tar', 'vm:disk.qcow2']) {
    assert.equal(assignmentRefusal(spec({ environment: { base, setup: [] } }), here(['container'])), null, base);
  }
});

test('a build that needs more memory or disk than the volunteer allows is refused, naming both', () => {
  const r = assignmentRefusal(spec({ limits: { memoryBytes: 2 * 1024 ** 3 } }), here(['container'], { memoryBytes: 1024 ** 3 }));
  assert.equal(r?.volunteer, true);
  assert.match(r!.message, /it needs 2\.0 GiB of memory; this volunteer allows 1\.0 GiB/);
  assert.match(exceedsVolunteer({ diskBytes: 10 * 1024 ** 3 }, { diskBytes: 5 * 1024 ** 3 }) ?? '', /it needs 10\.0 GiB of disk; this volunteer allows 5\.0 GiB/);
  assert.equal(exceedsVolunteer({ memoryBytes: 1024 ** 3 }, {}), null, 'no limit set: anything goes');
  assert.equal(exceedsVolunteer({}, { memoryBytes: 1024 }), null, 'the builder asks for nothing: the volunteer\'s cap applies when it runs');
});
