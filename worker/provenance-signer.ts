import { createHash, createPublicKey, sign, type KeyObject } from 'node:crypto';
import { dsse, json } from '@sigstore/core';
import type { BuildSpec, ExecutorKind, Limits } from '../protocol/build-spec.js';
import {
  buildDefinitionOf, CROWDBAKE_BUILD_TYPE, IN_TOTO_PAYLOAD_TYPE, invocationId, resolvedDependencies, SLSA_PROVENANCE_V1, STATEMENT_TYPE, workerBuilderId,
  type AttemptStatement, type Envelope,
} from '../protocol/provenance.js';
import { redactUrl } from '../protocol/source-url.js';

/**
 * The worker's side of [provenance]: one in-toto statement per build attempt, signed with the
 * key this worker made when it joined (DATA/projects/<project>.key), in a DSSE envelope.
 *
 * Everything in the statement is what this worker saw itself: the spec it received (hashed),
 * the revision it checked out, the limits it applied, the artifacts it hashed and uploaded.
 * Nothing from the master is run or opened here; the spec is only hashed, and the source URL
 * is redacted (the statement is published next to the artifact).
 */

export interface AttemptFacts {
  buildId: number;
  attempt: number;
  worker: string;
  spec: BuildSpec;
  executor: ExecutorKind;
  limits: Limits;
  revision: string | null;
  artifacts: { name: string; size: number; sha256: string }[];
  startedOn: string;
  finishedOn: string;
  agentVersion: string;
  /** The image the build's steps ran in (the executor's environmentId), or null. */
  imageId?: string | null;
}

const sha256 = (data: string | Buffer) => createHash('sha256').update(data).digest('hex');

/** sha256 of the RFC 8785 canonical JSON of a value (the spec, the environment). */
export function canonicalSha256(value: unknown): string {
  return sha256(json.canonicalize(JSON.parse(JSON.stringify(value))));
}

export function attemptStatement(f: AttemptFacts): AttemptStatement {
  const source = f.spec.source ? { git: redactUrl(f.spec.source.git), branch: f.spec.source.branch } : null;
  const limits: Record<string, number> = {};
  for (const [k, v] of Object.entries(f.limits)) if (typeof v === 'number') limits[k] = v;
  return {
    _type: STATEMENT_TYPE,
    subject: f.artifacts.map((a) => ({ name: a.name, digest: { sha256: a.sha256 }, annotations: { size: a.size } })),
    predicateType: SLSA_PROVENANCE_V1,
    predicate: {
      buildDefinition: {
        buildType: CROWDBAKE_BUILD_TYPE,
        // What the build is, not where it ran: the executor is recorded apart, below.
        externalParameters: { builder: f.spec.builder, source, revision: f.revision, specSha256: canonicalSha256(buildDefinitionOf(f.spec)) },
        internalParameters: {
          buildId: f.buildId, attempt: f.attempt, executor: f.executor, limits,
          environment: { base: f.spec.environment.base, setupLines: f.spec.environment.setup.length, sha256: canonicalSha256(f.spec.environment), imageId: f.imageId ?? null },
        },
        resolvedDependencies: resolvedDependencies(source, f.revision),
      },
      runDetails: {
        builder: { id: workerBuilderId(f.worker), version: { crowdbake: f.agentVersion } },
        metadata: { invocationId: invocationId(f.buildId, f.attempt), startedOn: f.startedOn, finishedOn: f.finishedOn },
      },
    },
  };
}

/** `sha256:` + hex of the SPKI DER of a public key: the keyid of envelopes and pins. */
export function keyIdOf(key: KeyObject): string {
  const pub = key.type === 'private' ? createPublicKey(key) : key;
  return `sha256:${sha256(pub.export({ type: 'spki', format: 'der' }))}`;
}

/** Signs a statement: DSSE over the pre-authentication encoding of @sigstore/core, with Ed25519. */
export function signStatement(statement: AttemptStatement, key: KeyObject): Envelope {
  const payload = Buffer.from(JSON.stringify(statement));
  const sig = sign(null, dsse.preAuthEncoding(IN_TOTO_PAYLOAD_TYPE, payload), key);
  return { payloadType: IN_TOTO_PAYLOAD_TYPE, payload: payload.toString('base64'), signatures: [{ keyid: keyIdOf(key), sig: sig.toString('base64') }] };
}
