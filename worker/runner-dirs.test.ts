import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, readdirSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { BuildSpec } from '../protocol/build-spec.js';
import type { Executor, SandboxRequest } from './executors/executor.js';
import { HostExecutor } from './executors/host.js';
import { FreezeGate } from './freeze-gate.js';
import { runBuild } from './runner.js';

const spec = {
  builder: 'b', revision: null, source: null, executor: 'host', environment: { base: 'busybox', setup: [] },
  steps: [{ name: 's', run: 'true', env: {} }], artifacts: [], limits: {}, network: false, testInstall: null,
} as unknown as BuildSpec;

/** The real host executor, recording what each sandbox was asked for; `keeps` overrides keepsBuildDirs. */
function recording(keeps?: boolean): { executor: Executor; opened: SandboxRequest[] } {
  const host = new HostExecutor();
  const opened: SandboxRequest[] = [];
  const executor = Object.assign(Object.create(host) as Executor, {
    open: (r: SandboxRequest) => { opened.push(r); return host.open(r); },
    ...(keeps === undefined ? {} : { keepsBuildDirs: keeps }),
  });
  return { executor, opened };
}

async function run(executor: Executor, workRoot: string, dirName?: string) {
  return runBuild({
    buildId: 7, attempt: 2, spec, executor, workRoot, ...(dirName ? { dirName } : {}), volunteerLimits: {},
    send: () => Promise.resolve(), sendLog: () => undefined, signal: new AbortController().signal, gate: new FreezeGate(),
  });
}

test('a build\'s sandboxes are named after its directory: b<id>-a<n> for the master\'s, its own for a local re-run', async (t) => {
  const root = mkdtempSync(join(tmpdir(), 'crowdbake-runner-dirs-'));
  t.after(() => rmSync(root, { recursive: true, force: true }));
  const { executor, opened } = recording();
  assert.equal(await run(executor, root), 'success');
  assert.equal(await run(executor, root, 'local-5'), 'success');
  assert.equal(opened.length, 2);
  assert.match(opened[0]!.id, /^b7-a2-/);
  assert.match(opened[1]!.id, /^local-5-/);
});

test('only an executor that keepsBuildDirs leaves a spare directory pair for the next build', async (t) => {
  for (const keeps of [true, false]) {
    const root = mkdtempSync(join(tmpdir(), 'crowdbake-runner-dirs-'));
    t.after(() => rmSync(root, { recursive: true, force: true }));
    assert.equal(await run(recording(keeps).executor, root), 'success');
    assert.deepEqual(readdirSync(root).filter((n) => n.startsWith('.spare-')).length, keeps ? 1 : 0, `keepsBuildDirs: ${keeps}`);
  }
});
