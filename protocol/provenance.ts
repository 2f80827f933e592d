import * as z from 'zod';
import { ExecutorNameSchema } from './executor-names.js';

/**
 * Provenance ([provenance], issue 18): what a worker signs about one build attempt, what the
 * master signs about a verified build, and the bundle served next to each artifact.
 *
 * - A worker's statement is an in-toto Statement v1 whose predicate is the subset of SLSA
 *   Provenance v1 that a Crowdbake worker can state truthfully (docs/ARCHITECTURE.md,
 *   "Provenance", says which fields and why), signed with the worker's Ed25519 key in a
 *   DSSE envelope.
 * - The farm's summary is an in-toto Statement v1 with a SLSA Verification Summary (VSA) v1
 *   predicate plus a `crowdbake` member naming the attempts that agreed and their volunteers,
 *   signed with the master's own Ed25519 key (DATA/farm.key).
 *
 * Schemas only: the signing and checking (node:crypto, @sigstore/core's PAE) live in
 * worker/provenance-signer.ts and master/provenance/.
 */

export const IN_TOTO_PAYLOAD_TYPE = 'application/vnd.in-toto+json';
export const STATEMENT_TYPE = 'https://in-toto.io/Statement/v1';
export const SLSA_PROVENANCE_V1 = 'https://slsa.dev/provenance/v1';
export const SLSA_VSA_V1 = 'https://slsa.dev/verification_summary/v1';
/**
 * The buildType of a Crowdbake attempt (docs/INTERFACES.md, "Provenance", says what its
 * parameters mean). v2: `specSha256` covers what the build is — the spec without its
 * `executor` (`buildDefinitionOf`) — so replicas of one build on a container and on a VM state
 * the same digest; the executor stays in `internalParameters.executor`.
 */
export const CROWDBAKE_BUILD_TYPE = 'urn:crowdbake:build-type:attempt:v2';
/**
 * The first buildType, still accepted from workers that sign it (announced as the `provenance`
 * feature) and in bundles made before v2: its `specSha256` covers the whole spec, executor
 * included, so its replicas compare only with replicas on the same executor.
 */
export const CROWDBAKE_BUILD_TYPE_V1 = 'urn:crowdbake:build-type:attempt:v1';

/** What a statement's `specSha256` covers, by its buildType: the spec without the executor it was assigned (v2), or the whole spec (v1). */
export function buildDefinitionOf<T extends { executor: unknown }>(spec: T, buildType: string = CROWDBAKE_BUILD_TYPE): Omit<T, 'executor'> | T {
  if (buildType === CROWDBAKE_BUILD_TYPE_V1) return spec;
  const { executor: _executor, ...definition } = spec;
  return definition;
}
export const BUNDLE_MEDIA_TYPE = 'application/vnd.crowdbake.provenance-bundle.v1+json';
/** The largest statement a worker may send (its payload, before base64). */
export const MAX_STATEMENT_BYTES = 256 * 1024;

const Sha256 = z.string().regex(/^[0-9a-f]{64}$/);
const Revision = z.string().regex(/^(?:[0-9a-f]{40}|[0-9a-f]{64})$/);
const Time = z.string().max(40).refine((t) => !Number.isNaN(Date.parse(t)), 'must be an ISO 8601 time');

/** The URI a worker names itself by in `runDetails.builder.id`. */
export function workerBuilderId(worker: string): string {
  return `urn:crowdbake:worker:${worker}`;
}

/** The invocation id of one attempt: it binds a statement to one build and one attempt. */
export function invocationId(buildId: number, attempt: number): string {
  return `build/${buildId}/attempt/${attempt}`;
}

/** The statement's `resolvedDependencies`: the source at the exact revision checked out. */
export function resolvedDependencies(source: { git: string; branch: string } | null, revision: string | null): { uri: string; digest: Record<string, string> }[] {
  return source && revision ? [{ uri: `git+${source.git}@refs/heads/${source.branch}`, digest: { gitCommit: revision } }] : [];
}

/** DSSE envelope (https://github.com/secure-systems-lab/dsse/blob/master/envelope.md), JSON form. */
export const EnvelopeSchema = z.strictObject({
  payloadType: z.string().min(1).max(200),
  payload: z.string().max(Math.ceil(MAX_STATEMENT_BYTES / 3) * 4 + 4).regex(/^[A-Za-z0-9+/]*={0,2}$/, 'must be standard base64'),
  signatures: z.array(z.strictObject({ keyid: z.string().max(200).default(''), sig: z.string().min(1).max(200) })).min(1).max(4),
});
export type Envelope = z.infer<typeof EnvelopeSchema>;

/** in-toto ResourceDescriptor, as a subject: a file name and its sha256 (its size as an annotation). */
export const SubjectSchema = z.strictObject({
  name: z.string().min(1).max(255),
  digest: z.strictObject({ sha256: Sha256 }),
  annotations: z.strictObject({ size: z.number().int().nonnegative() }),
});
export type Subject = z.infer<typeof SubjectSchema>;

/** SLSA Provenance v1, the subset a worker states (every field is one it observed itself). */
export const AttemptPredicateSchema = z.strictObject({
  buildDefinition: z.strictObject({
    buildType: z.enum([CROWDBAKE_BUILD_TYPE, CROWDBAKE_BUILD_TYPE_V1]),
    externalParameters: z.strictObject({
      builder: z.string().min(1).max(64),
      /** The source URL with any credential redacted (it is published), and the branch cloned; null: no source. */
      source: z.strictObject({ git: z.string().max(2000), branch: z.string().max(255) }).nullable(),
      revision: Revision.nullable(),
      /** sha256 of the RFC 8785 (JCS) canonical JSON of the build spec as the worker received it, without its executor (v2; v1: with it). */
      specSha256: Sha256,
    }),
    internalParameters: z.strictObject({
      buildId: z.number().int().positive(),
      attempt: z.number().int().positive(),
      executor: ExecutorNameSchema,
      /** The tighter of the builder's and the volunteer's limits, as applied. */
      limits: z.record(z.string(), z.number()),
      /** sha256 of the canonical JSON of the environment (base and setup lines), its base, and the image the steps ran in (podman's id; null: none). */
      environment: z.strictObject({ base: z.string().max(2000), setupLines: z.number().int().nonnegative(), sha256: Sha256, imageId: z.string().regex(/^[0-9a-f]{64}$/).nullable() }),
    }),
    resolvedDependencies: z.array(z.strictObject({
      uri: z.string().max(2100),
      digest: z.record(z.string(), z.string().max(128)),
    })).max(8),
  }),
  runDetails: z.strictObject({
    builder: z.strictObject({ id: z.string().max(200), version: z.record(z.string(), z.string().max(100)) }),
    metadata: z.strictObject({ invocationId: z.string().max(100), startedOn: Time, finishedOn: Time }),
  }),
});
export type AttemptPredicate = z.infer<typeof AttemptPredicateSchema>;

export const AttemptStatementSchema = z.strictObject({
  _type: z.literal(STATEMENT_TYPE),
  subject: z.array(SubjectSchema).max(1000),
  predicateType: z.literal(SLSA_PROVENANCE_V1),
  predicate: AttemptPredicateSchema,
});
export type AttemptStatement = z.infer<typeof AttemptStatementSchema>;

/** What the master saw of an attempt, that its statement must match exactly. */
export interface ReceivedAttempt {
  worker: string;
  buildId: number;
  attempt: number;
  builder: string;
  /** The source as the statement must name it (credentials redacted). */
  source: { git: string; branch: string } | null;
  revision: string | null;
  /** sha256 of the JCS form of the spec sent, by buildType (`buildDefinitionOf`): without the executor (v2), whole (v1); null: not checked. */
  specSha256: { [CROWDBAKE_BUILD_TYPE]: string; [CROWDBAKE_BUILD_TYPE_V1]: string } | null;
  /** The executor assigned and the environment sent (its base, setup line count, sha256 of its JCS form); null: not checked. */
  executor: string | null;
  environment: { base: string; setupLines: number; sha256: string } | null;
  artifacts: { name: string; size: number; sha256: string }[];
}

/**
 * Why a statement does not describe what was received (null when it does, field by field):
 * the worker, build and attempt, builder, source, revision, spec, and the artifacts' names,
 * sizes and sha256 — no more, no fewer.
 */
export function statementMismatch(s: AttemptStatement, r: ReceivedAttempt): string | null {
  const p = s.predicate;
  const ext = p.buildDefinition.externalParameters;
  const int = p.buildDefinition.internalParameters;
  if (p.runDetails.builder.id !== workerBuilderId(r.worker)) return `runDetails.builder.id is "${p.runDetails.builder.id}", not this worker's ${workerBuilderId(r.worker)}`;
  if (int.buildId !== r.buildId || int.attempt !== r.attempt || p.runDetails.metadata.invocationId !== invocationId(r.buildId, r.attempt)) {
    return `the statement is for build ${int.buildId} attempt ${int.attempt} (${p.runDetails.metadata.invocationId}), not build ${r.buildId} attempt ${r.attempt}: a replayed or misdirected statement`;
  }
  if (ext.builder !== r.builder) return `externalParameters.builder is "${ext.builder}", not "${r.builder}"`;
  if (JSON.stringify(ext.source) !== JSON.stringify(r.source)) return `externalParameters.source is ${JSON.stringify(ext.source)}, not ${JSON.stringify(r.source)}`;
  if (ext.revision !== r.revision) return `externalParameters.revision is ${ext.revision ?? 'null'}, but the worker checked out ${r.revision ?? 'nothing'}`;
  const sent = r.specSha256 === null ? null : r.specSha256[p.buildDefinition.buildType];
  if (sent != null && ext.specSha256 !== sent) return `externalParameters.specSha256 ${ext.specSha256.slice(0, 12)}… is not the spec the master sent (${sent.slice(0, 12)}…, ${p.buildDefinition.buildType})`;
  if (JSON.stringify(p.buildDefinition.resolvedDependencies) !== JSON.stringify(resolvedDependencies(r.source, r.revision))) {
    return `resolvedDependencies ${JSON.stringify(p.buildDefinition.resolvedDependencies)} are not the source at the revision checked out`;
  }
  if (r.executor !== null && int.executor !== r.executor) return `internalParameters.executor is ${int.executor}, but the build was assigned to its ${r.executor} executor`;
  const env = int.environment;
  if (r.environment !== null && (env.base !== r.environment.base || env.setupLines !== r.environment.setupLines || env.sha256 !== r.environment.sha256)) {
    return `internalParameters.environment (${env.base}, ${env.setupLines} setup line(s)) is not the environment the master sent (${r.environment.base}, ${r.environment.setupLines})`;
  }
  if (Date.parse(p.runDetails.metadata.startedOn) > Date.parse(p.runDetails.metadata.finishedOn)) return 'runDetails.metadata: the attempt finished before it started';
  const got = new Map(r.artifacts.map((a) => [a.name, a]));
  const said = new Map<string, Subject>();
  for (const sub of s.subject) {
    if (said.has(sub.name)) return `subject "${sub.name}" is named twice`;
    said.set(sub.name, sub);
    const a = got.get(sub.name);
    if (!a) return `subject "${sub.name}" (sha256 ${sub.digest.sha256.slice(0, 12)}…) was never uploaded in this attempt`;
    if (a.sha256 !== sub.digest.sha256) return `subject "${sub.name}" has sha256 ${sub.digest.sha256.slice(0, 12)}…, but the bytes uploaded have ${a.sha256.slice(0, 12)}…`;
    if (a.size !== sub.annotations.size) return `subject "${sub.name}" has size ${sub.annotations.size}, but ${a.size} bytes were uploaded`;
  }
  for (const name of got.keys()) if (!said.has(name)) return `artifact "${name}" was uploaded but the statement does not name it`;
  return null;
}

/** One attempt as the farm summary names it. */
export const SummaryAttemptSchema = z.strictObject({
  build: z.number().int().positive(),
  attempt: z.number().int().positive(),
  worker: z.string().max(100),
  /** The volunteer the worker belongs to; null for a maintainer's token (`token create`). */
  volunteer: z.strictObject({ id: z.string().max(100), displayName: z.string().max(200) }).nullable(),
  /** Who counts once under `owners: distinct`: the volunteer id, else `token:NAME`. */
  owner: z.string().max(200),
  verdict: z.enum(['pending', 'verified', 'disagreed', 'unverified']),
  /** The worker's Ed25519 public key (SPKI DER, base64) that signed, when it signed. */
  workerKey: z.string().max(200).nullable(),
  /** When the master accepted the statement (its own clock), and when the key was revoked. */
  acceptedAt: Time.nullable(),
  keyRevokedAt: Time.nullable(),
  /** sha256 of the attempt's DSSE payload: binds the envelope in the bundle to this summary. */
  statementSha256: Sha256.nullable(),
  /** This attempt's sha256 of the artifact (null: it made none by that name). */
  artifactSha256: Sha256.nullable(),
});
export type SummaryAttempt = z.infer<typeof SummaryAttemptSchema>;

export const FarmSummaryPredicateSchema = z.strictObject({
  verifier: z.strictObject({ id: z.string().max(300) }),
  timeVerified: Time,
  resourceUri: z.string().max(600),
  policy: z.strictObject({ uri: z.string().max(300) }),
  inputAttestations: z.array(z.strictObject({ uri: z.string().max(300), digest: z.strictObject({ sha256: Sha256 }) })).max(16),
  verificationResult: z.enum(['PASSED', 'FAILED']),
  verifiedLevels: z.array(z.string().max(100)).max(8),
  crowdbake: z.strictObject({
    farm: z.string().max(100),
    /** The build asked for (the group's id), how many replicas it had, and the group's verdict. */
    group: z.number().int().positive(),
    replicas: z.number().int().positive(),
    verdict: z.enum(['verified', 'disagreed', 'unverified', 'pending', 'unreplicated']),
    detail: z.string().max(10_000).nullable(),
    owners: z.enum(['any', 'distinct']),
    attempts: z.array(SummaryAttemptSchema).max(16),
  }),
});

export const FarmSummarySchema = z.strictObject({
  _type: z.literal(STATEMENT_TYPE),
  subject: z.array(SubjectSchema).length(1),
  predicateType: z.literal(SLSA_VSA_V1),
  predicate: FarmSummaryPredicateSchema,
});
export type FarmSummary = z.infer<typeof FarmSummarySchema>;

export const FARM_KEY_URL = '/.well-known/crowdbake/farm-key';

/** `GET /.well-known/crowdbake/farm-key`: the key that signs this farm's summaries. */
export const FarmKeySchema = z.strictObject({
  farm: z.string().max(100),
  /** `sha256:` + hex of the SPKI DER: the value to pin. */
  keyid: z.string().regex(/^sha256:[0-9a-f]{64}$/),
  algorithm: z.literal('ed25519'),
  publicKey: z.string().max(200),
  publicKeyPem: z.string().max(400),
  createdAt: Time,
});
export type FarmKey = z.infer<typeof FarmKeySchema>;

/** `GET /api/v1/builds/{id}/artifacts/{name}/provenance`. */
export const ProvenanceBundleSchema = z.strictObject({
  mediaType: z.literal(BUNDLE_MEDIA_TYPE),
  artifact: z.strictObject({ build: z.number().int().positive(), name: z.string().min(1).max(255), sha256: Sha256, size: z.number().int().nonnegative() }),
  farmKey: FarmKeySchema,
  /** The FarmSummary, signed by the farm key. */
  summary: EnvelopeSchema,
  /** Each signed attempt's envelope, by build and attempt (unsigned attempts have none). */
  attestations: z.array(z.strictObject({ build: z.number().int().positive(), attempt: z.number().int().positive(), worker: z.string().max(100), envelope: EnvelopeSchema })).max(16),
});
export type ProvenanceBundle = z.infer<typeof ProvenanceBundleSchema>;

/** The text a worker signs with its current key to enroll a new one (`POST /api/v1/workers/{name}/key`). */
export function keyRotationText(worker: string, newKey: string): string {
  return `crowdbake-worker-key-rotation/v1\n${worker}\n${newKey}`;
}

export const KeyRotationRequestSchema = z.strictObject({
  /** The new Ed25519 public key (SPKI DER, base64). */
  workerKey: z.string().min(1).max(200),
  /** keyRotationText signed with the current key (base64). */
  signature: z.string().min(1).max(200),
});
