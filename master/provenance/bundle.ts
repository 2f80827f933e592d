import {
  BUNDLE_MEDIA_TYPE, IN_TOTO_PAYLOAD_TYPE, SLSA_VSA_V1, STATEMENT_TYPE,
  type FarmSummary, type ProvenanceBundle, type SummaryAttempt,
} from '../../protocol/provenance.js';
import type { Store } from '../store/store.js';
import type { Verification } from '../verification.js';
import { ownerOf } from '../volunteers.js';
import type { Attestations } from './attestations.js';
import { signEnvelope } from './dsse.js';
import type { FarmSigner } from './farm-key.js';

/** The policy a farm summary applies: more than half of the replicas made identical bytes. */
export const REPLICA_POLICY = 'urn:crowdbake:policy:replica-quorum:v1';

export interface BundleDeps {
  store: Store;
  verification?: Verification | undefined;
  attestations: Attestations;
  signer: () => FarmSigner;
  /** The farm's public URL (crowdbake.yml `url:`, else where it listens). */
  farmUrl: () => string;
  /** Whether the builder asks `owners: distinct`. */
  ownersOf: (builder: string) => 'any' | 'distinct';
}

/**
 * The provenance bundle of one artifact: the farm's summary, signed with the farm key, and
 * the envelopes of the attempts it names. Made from the store and DATA/provenance on each
 * request: its bytes change only when a key is revoked (the summary says since when).
 * Null when the build has no such artifact.
 */
export async function provenanceBundle(d: BundleDeps, buildId: number, name: string): Promise<ProvenanceBundle | null> {
  const row = await d.store.getBuild(buildId);
  const art = row ? (await d.store.listArtifacts(buildId)).find((a) => a.name === name) : undefined;
  if (!row || !art) return null;
  const group = await d.verification?.viewOf(buildId);
  const members = group ? group.members : [{ id: buildId, worker: row.worker, verdict: 'pending' as const }];
  const attempts: SummaryAttempt[] = [];
  const attestations: ProvenanceBundle['attestations'] = [];
  let lastEnd = row.finishedAt ?? row.queuedAt;
  for (const m of members) {
    const mRow = m.id === buildId ? row : await d.store.getBuild(m.id);
    if (!mRow) continue;
    if (mRow.finishedAt && mRow.finishedAt > lastEnd) lastEnd = mRow.finishedAt;
    const record = d.attestations.get(m.id);
    const worker = record?.worker ?? mRow.worker ?? '';
    const token = worker ? await d.store.getToken(worker) : null;
    const volunteer = token?.volunteerId ? await d.store.getVolunteer(token.volunteerId) : null;
    const made = (await d.store.listArtifacts(m.id)).find((a) => a.name === name);
    attempts.push({
      build: m.id, attempt: record?.attempt ?? mRow.attempt, worker,
      volunteer: volunteer ? { id: volunteer.id, displayName: volunteer.displayName } : null,
      owner: ownerOf(token ?? { name: worker, volunteerId: null }),
      verdict: group ? m.verdict : 'unverified',
      workerKey: record?.workerKey ?? null,
      acceptedAt: record?.acceptedAt ?? null,
      // A revocation applies to the key the token holds; a statement made before it stays good.
      keyRevokedAt: record && token?.revokedAt && token.workerKey === record.workerKey ? token.revokedAt : null,
      statementSha256: record?.statementSha256 ?? null,
      artifactSha256: made?.sha256 ?? null,
    });
    if (record) attestations.push({ build: record.build, attempt: record.attempt, worker: record.worker, envelope: record.envelope });
  }
  const signer = d.signer();
  const farmUrl = d.farmUrl();
  const verdict = group ? group.verdict : 'unreplicated';
  const agreed = attempts.filter((a) => a.verdict === 'verified').length;
  const summary: FarmSummary = {
    _type: STATEMENT_TYPE,
    subject: [{ name, digest: { sha256: art.sha256 }, annotations: { size: art.size } }],
    predicateType: SLSA_VSA_V1,
    predicate: {
      verifier: { id: farmUrl },
      timeVerified: lastEnd,
      resourceUri: `${farmUrl}/api/v1/builds/${buildId}/artifacts/${encodeURIComponent(name)}`,
      policy: { uri: REPLICA_POLICY },
      inputAttestations: attempts.filter((a) => a.statementSha256).map((a) => ({ uri: `build/${a.build}/attempt/${a.attempt}`, digest: { sha256: a.statementSha256! } })),
      verificationResult: verdict === 'verified' ? 'PASSED' : 'FAILED',
      verifiedLevels: verdict === 'verified' ? [`CROWDBAKE_REPLICAS_AGREED_${agreed}_OF_${attempts.length}`] : [],
      crowdbake: {
        farm: signer.view.farm, group: group?.group ?? buildId, replicas: group?.replicas ?? 1, verdict,
        detail: group?.detail ?? null, owners: d.ownersOf(row.builder), attempts,
      },
    },
  };
  return {
    mediaType: BUNDLE_MEDIA_TYPE,
    artifact: { build: buildId, name, sha256: art.sha256, size: art.size },
    farmKey: signer.view,
    summary: signEnvelope(IN_TOTO_PAYLOAD_TYPE, Buffer.from(JSON.stringify(summary)), signer.privateKey),
    attestations,
  };
}
