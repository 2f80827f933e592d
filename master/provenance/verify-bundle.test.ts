import { test } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import { createHash, generateKeyPairSync } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import {
  BUNDLE_MEDIA_TYPE, CROWDBAKE_BUILD_TYPE_V1, IN_TOTO_PAYLOAD_TYPE, type AttemptStatement, SLSA_VSA_V1, STATEMENT_TYPE, type FarmSummary, type ProvenanceBundle, type SummaryAttempt,
} from '../../protocol/provenance.js';
import { attemptStatement, canonicalSha256, signStatement } from '../../worker/provenance-signer.js';
import { sha256Hex, signEnvelope } from './dsse.js';
import { loadFarmKey } from './farm-key.js';
import { verifyArtifact } from './verify-bundle.js';

// Bundles made here with real keys, to try the rules a farm would never sign by mistake but a
// compromised or buggy one could: the time of a revocation, distinct owners, a damaged bundle.

const FILE = Buffer.from('the artifact\n');
const spec = { builder: 'b', source: null, executor: 'host' as const, environment: { base: 'busybox', setup: [] }, steps: [], artifacts: ['out.txt'], limits: {}, network: false, testInstall: null, revision: null };

type Made = Partial<SummaryAttempt> & { owner: string; executor?: 'host' | 'container' | 'vm'; buildTypeV1?: boolean };

/** A statement as a worker of the first version signed it: buildType v1, its spec digest over the whole spec, executor included. */
function asV1(st: AttemptStatement, sentSpec: unknown): AttemptStatement {
  const out = structuredClone(st);
  out.predicate.buildDefinition.buildType = CROWDBAKE_BUILD_TYPE_V1;
  out.predicate.buildDefinition.externalParameters.specSha256 = canonicalSha256(sentSpec);
  return out;
}

function bundle(attempts: Made[], verdict: 'verified' | 'unreplicated'): string {
  const dir = mkdtempSync(join(tmpdir(), 'crowdbake-vb-'));
  try {
    const farm = loadFarmKey(dir, 'test-farm');
    const atts: ProvenanceBundle['attestations'] = [];
    const rows: SummaryAttempt[] = attempts.map(({ executor = 'host', buildTypeV1, ...a }, i) => {
      const { privateKey, publicKey } = generateKeyPairSync('ed25519');
      const sentSpec = { ...spec, executor };
      const st = attemptStatement({
        buildId: i + 1, attempt: 1, worker: `w${i}`, spec: sentSpec, executor, limits: {}, revision: null,
        artifacts: [{ name: 'out.txt', size: FILE.length, sha256: sha256Hex(FILE) }], startedOn: '2026-01-01T00:00:00.000Z', finishedOn: '2026-01-01T00:01:00.000Z', agentVersion: 't',
      });
      const env = signStatement(buildTypeV1 ? asV1(st, sentSpec) : st, privateKey);
      atts.push({ build: i + 1, attempt: 1, worker: `w${i}`, envelope: env });
      return {
        build: i + 1, attempt: 1, worker: `w${i}`, volunteer: null, verdict: verdict === 'verified' ? 'verified' : 'unverified',
        workerKey: publicKey.export({ type: 'spki', format: 'der' }).toString('base64'), acceptedAt: '2026-01-01T00:01:01.000Z', keyRevokedAt: null,
        statementSha256: createHash('sha256').update(Buffer.from(env.payload, 'base64')).digest('hex'), artifactSha256: sha256Hex(FILE), ...a,
      };
    });
    const summary: FarmSummary = {
      _type: STATEMENT_TYPE, subject: [{ name: 'out.txt', digest: { sha256: sha256Hex(FILE) }, annotations: { size: FILE.length } }], predicateType: SLSA_VSA_V1,
      predicate: {
        verifier: { id: 'http://farm' }, timeVerified: '2026-01-01T00:02:00.000Z', resourceUri: 'http://farm/api/v1/builds/1/artifacts/out.txt', policy: { uri: 'urn:p' }, inputAttestations: [],
        verificationResult: verdict === 'verified' ? 'PASSED' : 'FAILED', verifiedLevels: [],
        crowdbake: { farm: 'test-farm', group: 1, replicas: attempts.length, verdict, detail: null, owners: 'distinct', attempts: rows },
      },
    };
    const b: ProvenanceBundle = {
      mediaType: BUNDLE_MEDIA_TYPE, artifact: { build: 1, name: 'out.txt', sha256: sha256Hex(FILE), size: FILE.length }, farmKey: farm.view,
      summary: signEnvelope(IN_TOTO_PAYLOAD_TYPE, Buffer.from(JSON.stringify(summary)), farm.privateKey), attestations: atts,
    };
    return JSON.stringify(b);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

/** The keyid a user would have pinned for the farm that made a test bundle. */
const pinOf = (text: string) => ({ farmKey: (JSON.parse(text) as ProvenanceBundle).farmKey.keyid });
const check = (text: string, o: Parameters<typeof verifyArtifact>[2] = {}) => verifyArtifact(FILE, text, { ...pinOf(text), ...o });

test('without a pinned farm key verification fails and says how to pin; --trust-embedded-key passes a self-made bundle only with NOT pinned', () => {
  // Anyone can make a consistent bundle with a farm key of their own: the bundle cannot vouch for it.
  const selfMade = bundle([{ owner: 'volunteer:a' }, { owner: 'volunteer:b' }, { owner: 'volunteer:c' }], 'verified');
  const none = verifyArtifact(FILE, selfMade);
  assert.equal(none.ok, false);
  const reason = (none as { reason: string }).reason;
  assert.match(reason, /no farm key is pinned, and a bundle cannot vouch for its own key/);
  assert.match(reason, /\/\.well-known\/crowdbake\/farm-key/);
  assert.match(reason, /--farm-key FILE/);
  assert.ok(!none.checked.some((l) => /summary/.test(l)), 'nothing past the farm key is believed');
  const embedded = verifyArtifact(FILE, selfMade, { trustEmbeddedKey: true });
  assert.equal(embedded.ok, true, JSON.stringify(embedded));
  assert.ok(embedded.checked.some((l) => /taken from the bundle, NOT pinned \(--trust-embedded-key\)/.test(l)), embedded.checked.join('\n'));
  const pinned = check(selfMade);
  assert.equal(pinned.ok, true);
  assert.ok(pinned.checked.some((l) => /as pinned$/.test(l)));
});

test('the lines before the summary\'s signature is checked state only the file\'s own hash, never the bundle\'s unsigned build number or name', () => {
  const text = bundle([{ owner: 'volunteer:a' }], 'unreplicated');
  const ok = check(text, { allowUnreplicated: true });
  assert.equal(ok.ok, true);
  assert.match(ok.checked[0]!, /^file: sha256 [0-9a-f]{64}, \d+ bytes$/);
  assert.match(ok.checked.find((l) => l.startsWith('summary:'))!, /about this file as out\.txt of build 1;/);
  // The unsigned part says build 999: refused by the signed resourceUri, and 999 is printed only in the reason.
  const lying = JSON.parse(text) as ProvenanceBundle;
  lying.artifact.build = 999;
  const r = check(JSON.stringify(lying), { allowUnreplicated: true });
  assert.equal(r.ok, false);
  assert.match((r as { reason: string }).reason, /not build 999's out\.txt/);
  assert.ok(!r.checked.some((l) => l.includes('999')), r.checked.join('\n'));
});

test('replicas of one build on a container, a VM and the host state one spec digest and verify; v1 statements of one executor still verify; v1 and v2 together are refused by name', () => {
  const mixed = check(bundle([{ owner: 'volunteer:a', executor: 'container' }, { owner: 'volunteer:b', executor: 'vm' }, { owner: 'volunteer:c', executor: 'host' }], 'verified'));
  assert.equal(mixed.ok, true, JSON.stringify(mixed));
  for (const e of ['container', 'vm', 'host']) assert.ok(mixed.checked.some((l) => l.includes(`; ${e} executor, revision`)), `the ${e} executor is named`);
  // Bundles made before v2: their statements' digests cover the executor; replicas on one executor agree as before.
  assert.equal(check(bundle([{ owner: 'volunteer:a', buildTypeV1: true }, { owner: 'volunteer:b', buildTypeV1: true }, { owner: 'volunteer:c', buildTypeV1: true }], 'verified')).ok, true);
  const v1OtherExecutors = check(bundle([{ owner: 'volunteer:a', buildTypeV1: true, executor: 'container' }, { owner: 'volunteer:b', buildTypeV1: true, executor: 'vm' }], 'verified'));
  assert.match((v1OtherExecutors as { reason: string }).reason, /the agreeing statements describe different builds/);
  const both = check(bundle([{ owner: 'volunteer:a', buildTypeV1: true }, { owner: 'volunteer:b' }, { owner: 'volunteer:c' }], 'verified'));
  assert.match((both as { reason: string }).reason, /of different build types \(urn:crowdbake:build-type:attempt:v1, urn:crowdbake:build-type:attempt:v2\)/);
});

test('a statement accepted before its key was revoked passes; one accepted at or after the revocation fails, naming it', () => {
  const before = check(bundle([{ owner: 'volunteer:a', keyRevokedAt: '2026-02-01T00:00:00.000Z' }], 'unreplicated'), { allowUnreplicated: true });
  assert.equal(before.ok, true, JSON.stringify(before));
  const after = check(bundle([{ owner: 'volunteer:a', keyRevokedAt: '2026-01-01T00:00:30.000Z' }], 'unreplicated'), { allowUnreplicated: true });
  assert.equal(after.ok, false);
  assert.match((after as { reason: string }).reason, /signed with a key revoked at 2026-01-01T00:00:30\.000Z, at or after the revocation/);
});

test('agreeing replicas of one owner fail; an unreplicated artifact needs --allow-unreplicated; a damaged bundle names the field', () => {
  const same = check(bundle([{ owner: 'volunteer:a' }, { owner: 'volunteer:a' }, { owner: 'volunteer:b' }], 'verified'));
  assert.equal(same.ok, false);
  assert.match((same as { reason: string }).reason, /agreeing replicas must come from distinct volunteers/);
  assert.equal(check(bundle([{ owner: 'volunteer:a' }, { owner: 'volunteer:b' }, { owner: 'volunteer:c' }], 'verified')).ok, true);
  const once = check(bundle([{ owner: 'volunteer:a' }], 'unreplicated'));
  assert.match((once as { reason: string }).reason, /built once, not replicated/);
  const damaged = JSON.parse(bundle([{ owner: 'volunteer:a' }], 'unreplicated'));
  damaged.artifact.sha256 = 'nope';
  const r = check(JSON.stringify(damaged), { allowUnreplicated: true });
  assert.match((r as { reason: string }).reason, /the bundle is not a Crowdbake provenance bundle: artifact\.sha256/);
  assert.match((verifyArtifact(FILE, '{not json', {}) as { reason: string }).reason, /the bundle is not JSON/);
});

test('fuzz: 3,000 mutated bundles never throw, and none verifies unless it is the genuine one', () => {
  const genuine = bundle([{ owner: 'volunteer:a' }, { owner: 'volunteer:b' }, { owner: 'volunteer:c' }], 'verified');
  assert.equal(check(genuine).ok, true);
  const base = JSON.parse(genuine) as Record<string, unknown>;
  // Paths to every leaf of the bundle, to change one at a time (and the envelopes' payloads inside).
  const leaves: (string | number)[][] = [];
  const walk = (v: unknown, path: (string | number)[]) => {
    if (v !== null && typeof v === 'object') for (const [k, x] of Object.entries(v)) walk(x, [...path, Array.isArray(v) ? Number(k) : k]);
    else leaves.push(path);
  };
  walk(base, []);
  const values = fc.oneof(fc.string(), fc.integer(), fc.constant(null), fc.boolean(), fc.base64String(), fc.stringMatching(/^[0-9a-f]{64}$/), fc.object());
  fc.assert(fc.property(fc.nat(leaves.length - 1), values, fc.nat(40), (i, value, cut) => {
    const b = structuredClone(base);
    const path = leaves[i]!;
    let o = b as Record<string | number, unknown>;
    for (const k of path.slice(0, -1)) o = o[k] as Record<string | number, unknown>;
    const last = path.at(-1)!;
    const next = typeof o[last] === 'string' && cut > 30 ? (o[last] as string).slice(0, cut) : value;
    if (JSON.stringify(o[last]) === JSON.stringify(next)) return;
    o[last] = next;
    const r = verifyArtifact(FILE, JSON.stringify(b), { farmKey: (base as { farmKey: { keyid: string } }).farmKey.keyid });
    // Not signed over, and not believed: an envelope's keyid hint (DSSE signs the payload only), the key's creation time.
    if (r.ok) assert.match(path.join('.'), /signatures\.\d+\.keyid$|^farmKey\.createdAt$/, `a changed ${path.join('.')} still verified`);
    else assert.ok(r.reason.length > 0);
  }), { numRuns: 3000, seed: 18 });
});
