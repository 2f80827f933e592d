import { createPublicKey, type KeyObject } from 'node:crypto';
import {
  AttemptStatementSchema, FarmKeySchema, FarmSummarySchema, invocationId, IN_TOTO_PAYLOAD_TYPE, ProvenanceBundleSchema, workerBuilderId,
  type AttemptStatement, type FarmSummary,
} from '../../protocol/provenance.js';
import { UNLISTED_VOLUNTEER_ID } from '../../protocol/api.js';
import { describeIssues } from '../../protocol/parse.js';
import { keyIdOf, publicKeyOf, sha256Hex, verifyEnvelope } from './dsse.js';

export interface VerifyOptions {
  /** The pinned farm key: a keyid (`sha256:HEX`), or its public key as PEM or as the well-known JSON. Required unless `trustEmbeddedKey`. */
  farmKey?: string;
  /**
   * No pin: check the bundle with the key it brought itself (`--trust-embedded-key`). That only
   * shows the bundle is self-consistent — anyone can make such a bundle with a key of their own —
   * so the result says it is NOT pinned. Without a pin and without this, verification fails.
   */
  trustEmbeddedKey?: boolean;
  /** Accept an artifact that was built once (no replicas) when its one attempt is signed. */
  allowUnreplicated?: boolean;
}

export type VerifyResult = { ok: true; checked: string[] } | { ok: false; checked: string[]; reason: string };

class Refused extends Error {}

/**
 * `crowdbake verify FILE --provenance BUNDLE`: everything checked offline, from the file's
 * bytes, the bundle and (optionally) a pinned farm key. Each check that passes adds a line to
 * `checked`; the first that fails is the `reason`. The bundle is untrusted input: parsed
 * with its schema, every signature checked before its payload is believed.
 */
export function verifyArtifact(file: Buffer, bundleText: string, o: VerifyOptions = {}): VerifyResult {
  const checked: string[] = [];
  try {
    run(file, bundleText, o, checked);
    return { ok: true, checked };
  } catch (e) {
    if (e instanceof Refused) return { ok: false, checked, reason: e.message };
    throw e;
  }
}

function refuse(why: string): never {
  throw new Refused(why);
}

function parseJson(text: string, what: string): unknown {
  try { return JSON.parse(text); } catch (e) { return refuse(`${what} is not JSON: ${(e as Error).message}`); }
}

/** The pinned key's keyid, from `sha256:HEX`, a PEM public key, or the farm-key JSON. */
export function pinnedKeyId(pin: string): string {
  const t = pin.trim();
  if (/^sha256:[0-9a-f]{64}$/i.test(t)) return t.toLowerCase();
  if (t.startsWith('{')) {
    const k = FarmKeySchema.safeParse(parseJson(t, 'the farm key'));
    if (!k.success) refuse(`the farm key is not the JSON of ${'/.well-known/crowdbake/farm-key'}: ${describeIssues(k.error)}`);
    const key = publicKeyOf(k.data.publicKey);
    if (!key) refuse('the farm key\'s publicKey is not an Ed25519 key');
    return keyIdOf(key);
  }
  let key: KeyObject;
  try { key = createPublicKey(t); } catch { return refuse('the farm key is neither sha256:HEX, a PEM public key nor the farm-key JSON'); }
  if (key.asymmetricKeyType !== 'ed25519') refuse(`the farm key is a ${key.asymmetricKeyType} key; farm keys are Ed25519`);
  return keyIdOf(key);
}

function run(file: Buffer, bundleText: string, o: VerifyOptions, checked: string[]): void {
  const parsed = ProvenanceBundleSchema.safeParse(parseJson(bundleText, 'the bundle'));
  if (!parsed.success) refuse(`the bundle is not a Crowdbake provenance bundle: ${describeIssues(parsed.error)}`);
  const b = parsed.data;
  const fileSha = sha256Hex(file);
  if (fileSha !== b.artifact.sha256 || file.length !== b.artifact.size) {
    refuse(`wrong bytes: the file has sha256 ${fileSha} (${file.length} bytes), the bundle is for ${b.artifact.name} with sha256 ${b.artifact.sha256} (${b.artifact.size} bytes)`);
  }
  // Only facts: the file's own hash here; what it is (name, build) once the farm's signature on the summary says so.
  checked.push(`file: sha256 ${fileSha}, ${file.length} bytes`);

  // The farm: its key from the bundle, checked against the pin.
  const farmKey = publicKeyOf(b.farmKey.publicKey);
  if (!farmKey) refuse('the bundle\'s farmKey.publicKey is not an Ed25519 key');
  const farmKeyId = keyIdOf(farmKey);
  if (farmKeyId !== b.farmKey.keyid) refuse(`the bundle's farm key does not have the keyid it claims (${b.farmKey.keyid}; it is ${farmKeyId})`);
  let pem: KeyObject | null = null;
  try { pem = createPublicKey(b.farmKey.publicKeyPem); } catch { pem = null; }
  if (!pem || keyIdOf(pem) !== farmKeyId) refuse('the bundle\'s farmKey.publicKeyPem is not the same key as its publicKey');
  if (o.farmKey !== undefined) {
    const pinned = pinnedKeyId(o.farmKey);
    if (pinned !== farmKeyId) refuse(`the summary is from another farm: it is signed by farm key ${farmKeyId} ("${b.farmKey.farm}"), the pinned farm key is ${pinned}`);
    checked.push(`farm key: ${farmKeyId}, as pinned`);
  } else if (o.trustEmbeddedKey) {
    checked.push(`farm key: ${farmKeyId} taken from the bundle, NOT pinned (--trust-embedded-key): this shows only that the bundle is consistent with itself, not that it is your farm's`);
  } else {
    // A key the bundle brought itself proves nothing: whoever made the bundle chose it.
    refuse(`no farm key is pinned, and a bundle cannot vouch for its own key (this one claims farm "${b.farmKey.farm}", key ${farmKeyId}): fetch https://FARM/.well-known/crowdbake/farm-key once, over a channel you trust, save it and pass --farm-key FILE (or its keyid, --farm-key sha256:HEX); --trust-embedded-key checks the bundle against its own key, which pins nothing`);
  }
  if (b.summary.payloadType !== IN_TOTO_PAYLOAD_TYPE) refuse(`the summary's payloadType is "${b.summary.payloadType}", not ${IN_TOTO_PAYLOAD_TYPE}`);
  const summaryBytes = verifyEnvelope(b.summary, farmKey);
  if (!summaryBytes) refuse(`the summary's signature does not verify with farm key ${farmKeyId}`);
  const s = FarmSummarySchema.safeParse(parseJson(summaryBytes.toString('utf8'), 'the summary'));
  if (!s.success) refuse(`the signed summary is not a farm summary: ${describeIssues(s.error)}`);
  const summary: FarmSummary = s.data;
  const subject = summary.subject[0]!;
  if (subject.digest.sha256 !== fileSha || subject.name !== b.artifact.name || subject.annotations.size !== file.length) {
    refuse(`the summary is about other bytes: ${subject.name} sha256 ${subject.digest.sha256}, not this file (${b.artifact.name}, sha256 ${fileSha})`);
  }
  if (!summary.predicate.resourceUri.endsWith(`/api/v1/builds/${b.artifact.build}/artifacts/${encodeURIComponent(b.artifact.name)}`)) {
    refuse(`the summary is about ${summary.predicate.resourceUri}, not build ${b.artifact.build}'s ${b.artifact.name}`);
  }
  const cb = summary.predicate.crowdbake;
  if (cb.farm !== b.farmKey.farm) refuse(`the summary names farm "${cb.farm}", its key is farm "${b.farmKey.farm}"`);
  checked.push(`summary: signed by farm "${cb.farm}", about this file as ${b.artifact.name} of build ${b.artifact.build}; verdict ${cb.verdict} (${summary.predicate.verificationResult}) of ${cb.replicas} replica(s), group ${cb.group}`);

  const replicated = cb.verdict !== 'unreplicated';
  if (replicated && summary.predicate.verificationResult !== 'PASSED') refuse(`the farm did not verify this artifact: verdict ${cb.verdict}${cb.detail ? ` (${cb.detail})` : ''}`);
  if (!replicated && !o.allowUnreplicated) refuse('the artifact was built once, not replicated: nothing was compared (pass --allow-unreplicated to accept one signed attempt)');

  // Each attempt that agreed (or the only one): signed by its worker's key, about these bytes, not replayed.
  const counted = replicated ? cb.attempts.filter((a) => a.verdict === 'verified') : cb.attempts;
  const statements: AttemptStatement[] = [];
  const owners = new Map<string, string>();
  const keys = new Set<string>();
  for (const a of counted) {
    const who = `build ${a.build} attempt ${a.attempt} on ${a.worker}`;
    if (a.artifactSha256 !== fileSha) refuse(`${who}: the summary counts it, but it made sha256 ${a.artifactSha256 ?? 'nothing'}`);
    if (!a.workerKey || !a.statementSha256) {
      checked.push(`${who}: unsigned (a worker without an enrolled key): not counted`);
      continue;
    }
    const env = b.attestations.find((x) => x.build === a.build && x.attempt === a.attempt);
    if (!env) refuse(`${who}: its signed statement is missing from the bundle`);
    if (env.worker !== a.worker) refuse(`${who}: the bundle files its statement under worker ${env.worker}`);
    const key = publicKeyOf(a.workerKey);
    if (!key) refuse(`${who}: its worker key is not an Ed25519 key`);
    const payload = verifyEnvelope(env.envelope, key);
    if (!payload) refuse(`${who}: the statement's signature does not verify with the key the farm enrolled for ${a.worker} (${keyIdOf(key)}): signed by another key`);
    if (sha256Hex(payload) !== a.statementSha256) refuse(`${who}: the statement is not the one the farm accepted (sha256 ${sha256Hex(payload)}, the summary names ${a.statementSha256}): replayed or swapped`);
    const st = AttemptStatementSchema.safeParse(parseJson(payload.toString('utf8'), `${who}'s statement`));
    if (!st.success) refuse(`${who}: the statement is not an in-toto SLSA statement: ${describeIssues(st.error)}`);
    const p = st.data.predicate;
    if (p.runDetails.builder.id !== workerBuilderId(a.worker)) refuse(`${who}: the statement names builder ${p.runDetails.builder.id}, not ${workerBuilderId(a.worker)}`);
    if (p.buildDefinition.internalParameters.buildId !== a.build || p.buildDefinition.internalParameters.attempt !== a.attempt || p.runDetails.metadata.invocationId !== invocationId(a.build, a.attempt)) {
      refuse(`${who}: the statement is for ${p.runDetails.metadata.invocationId}: replayed from another build or attempt`);
    }
    const sub = st.data.subject.find((x) => x.name === b.artifact.name);
    if (!sub || sub.digest.sha256 !== fileSha || sub.annotations.size !== file.length) refuse(`${who}: the statement does not name ${b.artifact.name} with sha256 ${fileSha}`);
    if (a.keyRevokedAt) {
      const revoked = Date.parse(a.keyRevokedAt);
      if (!a.acceptedAt || Date.parse(a.acceptedAt) >= revoked || Date.parse(p.runDetails.metadata.finishedOn) >= revoked) {
        refuse(`${who}: signed with a key revoked at ${a.keyRevokedAt}, at or after the revocation (accepted ${a.acceptedAt ?? 'never'})`);
      }
      checked.push(`${who}: its key was revoked at ${a.keyRevokedAt}, after this statement was accepted (${a.acceptedAt}): still good`);
    }
    const owner = a.volunteer ? (a.volunteer.id === UNLISTED_VOLUNTEER_ID ? a.volunteer.displayName : `volunteer ${a.volunteer.id} (${a.volunteer.displayName})`) : `maintainer token ${a.worker}`;
    if (owners.has(a.owner)) refuse(`${who}: the same owner as ${owners.get(a.owner)} (${owner}): agreeing replicas must come from distinct volunteers`);
    if (keys.has(a.workerKey)) refuse(`${who}: the same worker key as another agreeing attempt`);
    owners.set(a.owner, who);
    keys.add(a.workerKey);
    statements.push(st.data);
    checked.push(`${who}: signed by its worker key ${keyIdOf(key)}, ${owner}; ${p.buildDefinition.internalParameters.executor} executor, revision ${p.buildDefinition.externalParameters.revision ?? 'none'}, ${p.runDetails.metadata.startedOn} to ${p.runDetails.metadata.finishedOn}`);
  }
  // The agreeing statements describe the same build: builder, source, revision, spec. A v2
  // spec digest leaves out the executor, so replicas on a container and a VM agree; a v1 one
  // (older workers, older bundles) covers it, and a v1 and a v2 digest cannot be compared.
  const firstType = statements[0]?.predicate.buildDefinition.buildType;
  const first = statements[0]?.predicate.buildDefinition.externalParameters;
  for (const st of statements.slice(1)) {
    const type = st.predicate.buildDefinition.buildType;
    if (type !== firstType) refuse(`the agreeing statements are of different build types (${firstType}, ${type}): their spec digests cover different things (v1's includes the executor) and cannot be compared`);
    const e = st.predicate.buildDefinition.externalParameters;
    if (JSON.stringify(e) !== JSON.stringify(first)) refuse(`the agreeing statements describe different builds: ${JSON.stringify(e)} vs ${JSON.stringify(first)}`);
  }
  const quorum = replicated ? Math.floor(cb.replicas / 2) + 1 : 1;
  if (statements.length < quorum) refuse(`only ${statements.length} signed attempt(s) from distinct volunteers made these bytes; ${quorum} of ${cb.replicas} are needed`);
  checked.push(`${statements.length} signed attempt(s) from ${owners.size} distinct owner(s) made these bytes (${quorum} needed of ${cb.replicas})`);
}
