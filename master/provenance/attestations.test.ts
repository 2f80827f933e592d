import { test } from 'node:test';
import assert from 'node:assert/strict';
import { generateKeyPairSync, sign } from 'node:crypto';
import { dsse } from '@sigstore/core';
import fc from 'fast-check';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { BuildSpecSchema, type BuildSpec } from '../../protocol/build-spec.js';
import { CROWDBAKE_BUILD_TYPE_V1, IN_TOTO_PAYLOAD_TYPE, type AttemptStatement } from '../../protocol/provenance.js';
import { attemptStatement, canonicalSha256, signStatement } from '../../worker/provenance-signer.js';
import { openStore } from '../store/open-store.js';
import type { BuildRow } from '../store/store.js';
import { Attestations } from './attestations.js';

// The master's check of a worker's statement against what it saw of the attempt, with the
// real signer and a real SQLite store: what it accepts, and each field it refuses, by name.

const REV = 'a'.repeat(40);
const sent = {
  builder: 'pkg', source: { git: 'https://ci:s3cret-token@git.example.org/pkg.git', branch: 'main' }, executor: 'container', revision: REV,
  environment: { base: 'busybox', setup: ['echo hi'] }, steps: [{ name: 'build', run: 'make', env: {} }], artifacts: ['*.deb'],
  limits: { cpus: 2 }, network: false, testInstall: null,
};
const artifacts = [{ name: 'pkg.deb', size: 10, sha256: 'b'.repeat(64) }, { name: 'pkg.buildinfo', size: 3, sha256: 'c'.repeat(64) }];

async function setup(t: { after(fn: () => unknown): void }) {
  const dir = mkdtempSync(join(tmpdir(), 'crowdbake-att-'));
  const store = await openStore(`sqlite:${join(dir, 'db')}`);
  t.after(async () => { await store.close(); rmSync(dir, { recursive: true, force: true }); });
  const { privateKey, publicKey } = generateKeyPairSync('ed25519');
  await store.createToken({ name: 'w1', hash: 'h', labels: [], maxBuilds: 1, createdAt: 't', revokedAt: null, workerKey: publicKey.export({ type: 'spki', format: 'der' }).toString('base64') });
  const row = { id: 7, builder: 'pkg', revision: REV, attempt: 2 } as BuildRow;
  const spec: BuildSpec = BuildSpecSchema.parse(JSON.parse(JSON.stringify(sent)));
  const facts = { buildId: 7, attempt: 2, worker: 'w1', spec, executor: 'container' as 'container' | 'vm' | 'host', limits: { cpus: 2 }, revision: REV, artifacts, startedOn: '2026-01-01T00:00:00Z', finishedOn: '2026-01-01T00:01:00Z', agentVersion: 't' };
  return { att: new Attestations(store, dir), privateKey, row, facts, store };
}

test('a true statement is accepted and kept, with the source credential redacted before signing', async (t) => {
  const { att, privateKey, row, facts } = await setup(t);
  const envelope = signStatement(attemptStatement(facts), privateKey);
  assert.ok(!Buffer.from(envelope.payload, 'base64').toString().includes('s3cret-token'), 'the published statement holds no credential');
  assert.equal(await att.accept({ row, worker: 'w1', sent, received: [...artifacts].reverse(), envelope, required: true }), null);
  assert.equal(att.get(7)?.envelope.payload, envelope.payload);
});

test('replicas sent to a container and to a VM state one spec digest, and the master accepts each; a v1 statement (whole spec) from an older worker is still accepted, a v1 one with the v2 digest is not', async (t) => {
  const { att, privateKey, row, facts } = await setup(t);
  const asVm = { ...sent, executor: 'vm' };
  const onVm = signStatement(attemptStatement({ ...facts, executor: 'vm', spec: BuildSpecSchema.parse(asVm) }), privateKey);
  const onContainer = signStatement(attemptStatement(facts), privateKey);
  const digest = (e: { payload: string }) => (JSON.parse(Buffer.from(e.payload, 'base64').toString()) as AttemptStatement).predicate.buildDefinition;
  assert.equal(digest(onVm).externalParameters.specSha256, digest(onContainer).externalParameters.specSha256);
  assert.deepEqual([digest(onVm).buildType, digest(onContainer).buildType], ['urn:crowdbake:build-type:attempt:v2', 'urn:crowdbake:build-type:attempt:v2']);
  assert.equal(await att.accept({ row, worker: 'w1', sent: asVm, received: artifacts, envelope: onVm, required: true }), null);
  assert.equal(await att.accept({ row, worker: 'w1', sent, received: artifacts, envelope: onContainer, required: true }), null);
  // The executor is still checked, apart from the digest.
  assert.match((await att.accept({ row, worker: 'w1', sent, received: artifacts, envelope: onVm, required: true }))!, /internalParameters\.executor is vm, but the build was assigned to its container executor/);
  const v1 = (specSha256: string): AttemptStatement => {
    const st = attemptStatement(facts);
    st.predicate.buildDefinition.buildType = CROWDBAKE_BUILD_TYPE_V1;
    st.predicate.buildDefinition.externalParameters.specSha256 = specSha256;
    return st;
  };
  assert.equal(await att.accept({ row, worker: 'w1', sent, received: artifacts, envelope: signStatement(v1(canonicalSha256(facts.spec)), privateKey), required: true }), null);
  const v1WithV2Digest = signStatement(v1(digest(onContainer).externalParameters.specSha256), privateKey);
  assert.match((await att.accept({ row, worker: 'w1', sent, received: artifacts, envelope: v1WithV2Digest, required: true }))!, /externalParameters\.specSha256 .* is not the spec the master sent \(.*, urn:crowdbake:build-type:attempt:v1\)/);
});

test('a refused statement removes the artifact rows of its attempt, so nothing names them even when the build ends there', async (t) => {
  const { att, privateKey, facts, store } = await setup(t);
  const build = await store.insertBuild({ builder: 'pkg', revision: REV, reason: null, queuedAt: new Date().toISOString() });
  await store.updateBuild(build.id, { state: 'running', worker: 'w1', attempt: 2 });
  const row = (await store.getBuild(build.id))!;
  for (const a of artifacts) await store.putArtifact({ buildId: build.id, ...a, worker: 'w1' });
  assert.equal((await store.listArtifacts(build.id)).length, 2);
  const lying = signStatement(attemptStatement({ ...facts, buildId: build.id, artifacts: [{ ...artifacts[0]!, sha256: 'd'.repeat(64) }, artifacts[1]!] }), privateKey);
  assert.match((await att.accept({ row, worker: 'w1', sent, received: artifacts, envelope: lying, required: true }))!, /does not match what it uploaded/);
  assert.deepEqual(await store.listArtifacts(build.id), []);
  // Accepted: kept.
  for (const a of artifacts) await store.putArtifact({ buildId: build.id, ...a, worker: 'w1' });
  const honest = signStatement(attemptStatement({ ...facts, buildId: build.id }), privateKey);
  assert.equal(await att.accept({ row, worker: 'w1', sent, received: artifacts, envelope: honest, required: true }), null);
  assert.equal((await store.listArtifacts(build.id)).length, 2);
});

test('each field that does not match what the master saw is refused by name', async (t) => {
  const { att, privateKey, row, facts } = await setup(t);
  const refuse = async (f: Partial<typeof facts>, received = artifacts, extra: { sent?: unknown; worker?: string } = {}) =>
    att.accept({ row, worker: extra.worker ?? 'w1', sent: extra.sent ?? sent, received, envelope: signStatement(attemptStatement({ ...facts, ...f }), privateKey), required: false });
  assert.match((await refuse({ artifacts: [artifacts[0]!] }))!, /artifact "pkg\.buildinfo" was uploaded but the statement does not name it/);
  assert.match((await refuse({}, [artifacts[0]!]))!, /subject "pkg\.buildinfo" .* was never uploaded in this attempt/);
  assert.match((await refuse({ artifacts: [{ ...artifacts[0]!, size: 11 }, artifacts[1]!] }))!, /subject "pkg\.deb" has size 11, but 10 bytes were uploaded/);
  assert.match((await refuse({ revision: 'd'.repeat(40) }))!, /externalParameters\.revision is d{40}, but the worker checked out a{40}/);
  assert.match((await refuse({ attempt: 1 }))!, /for build 7 attempt 1 .* not build 7 attempt 2: a replayed or misdirected statement/);
  assert.match((await refuse({ worker: 'w2' }))!, /runDetails\.builder\.id is "urn:crowdbake:worker:w2", not this worker's urn:crowdbake:worker:w1/);
  assert.match((await refuse({}, artifacts, { sent: { ...sent, steps: [{ name: 'build', run: 'make evil', env: {} }] } }))!, /externalParameters\.specSha256 .* is not the spec the master sent/);
  assert.match((await refuse({ executor: 'host' }))!, /internalParameters\.executor is host, but the build was assigned to its container executor/);
  assert.match((await refuse({ spec: { ...facts.spec, environment: { base: 'busybox', setup: [] } } }, artifacts))!, /externalParameters\.specSha256|internalParameters\.environment/);
  assert.match((await refuse({ startedOn: '2026-01-02T00:00:00Z' }))!, /the attempt finished before it started/);
  assert.match((await refuse({}, artifacts, { worker: 'nobody' }))!, /no key is enrolled for it/);
  assert.equal(att.get(7), null, 'nothing refused is kept');
});

test('fuzz: 500 envelopes signed with the enrolled key over random or damaged payloads: refused with a reason unless only the worker\'s own word changed; never a throw', async (t) => {
  const { att, privateKey, row, facts } = await setup(t);
  const good = JSON.stringify(attemptStatement(facts));
  const payloads = fc.oneof(
    fc.string({ maxLength: 2000 }),
    fc.json(),
    fc.tuple(fc.nat(good.length), fc.string({ maxLength: 20 })).map(([i, x]) => good.slice(0, i) + x + good.slice(i + x.length)),
  );
  await fc.assert(fc.asyncProperty(payloads, async (text) => {
    const payload = Buffer.from(text);
    const envelope = { payloadType: IN_TOTO_PAYLOAD_TYPE, payload: payload.toString('base64'), signatures: [{ keyid: '', sig: sign(null, dsse.preAuthEncoding(IN_TOTO_PAYLOAD_TYPE, payload), privateKey).toString('base64') }] };
    const why = await att.accept({ row, worker: 'w1', sent, received: artifacts, envelope, required: false });
    if (why === null) {
      // Accepted: only what is the worker's own word may differ (the limits it applied, the image id, its times and version).
      const checked = (st: { subject: unknown; predicate: { buildDefinition: { externalParameters: unknown; resolvedDependencies: unknown; internalParameters: Record<string, unknown> }; runDetails: { builder: { id: unknown }; metadata: { invocationId: unknown } } } }) => {
        const { limits: _l, environment, ...rest } = st.predicate.buildDefinition.internalParameters;
        const { imageId: _i, ...env } = environment as Record<string, unknown>;
        return JSON.stringify([st.subject, st.predicate.buildDefinition.externalParameters, st.predicate.buildDefinition.resolvedDependencies, rest, env, st.predicate.runDetails.builder.id, st.predicate.runDetails.metadata.invocationId]);
      };
      assert.equal(checked(JSON.parse(text)), checked(JSON.parse(good)), `accepted: ${text}`);
      return;
    }
    assert.ok(why.length > 0);
  }), { numRuns: 500, seed: 18 });
});
