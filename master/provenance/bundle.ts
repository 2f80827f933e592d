import {
  BUNDLE_MEDIA_TYPE, IN_TOTO_PAYLOAD_TYPE, SLSA_VSA_V1, STATEMENT_TYPE,
  type FarmSummary, type ProvenanceBundle, type SummaryAttempt,
} from '../../protocol/provenance.js';
import { createHmac } from 'node:crypto';
import { UNLISTED_VOLUNTEER_ID, UNLISTED_VOLUNTEER_LABEL } from '../../protocol/api.js';
import type { Store, VolunteerRow } from '../store/store.js';
import type { Verification } from '../verification.js';
import { ownerOf } from '../volunteers.js';
import type { Attestations } from './attestations.js';
import { signEnvelope } from './dsse.js';
import type { FarmSigner } from './farm-key.js';
import type { WorkerKeys } from './worker-keys.js';

/** The policy a farm summary applies: more than half of the replicas made identical bytes. */
export const REPLICA_POLICY = 'urn:crowdbake:policy:replica-quorum:v1';

export interface BundleDeps {
  store: Store;
  verification?: Verification | undefined;
  attestations: Attestations;
  keys: WorkerKeys;
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
/**
 * How a bundle names a volunteer and counts them under `owners: distinct`. A listed one by
 * id and display name, as on the Contributors page. An unlisted one by the public label only,
 * and an owner that is distinct per volunteer within this group but says nothing across
 * groups: an HMAC, keyed with the farm's private key, of the volunteer id and the group —
 * no one without the key can link it to the volunteer or to their other bundles.
 */
function publicVolunteer(v: VolunteerRow | null, owner: string, group: number, signer: FarmSigner): { volunteer: SummaryAttempt['volunteer']; owner: string } {
  if (!v) return { volunteer: null, owner };
  if (v.listed) return { volunteer: { id: v.id, displayName: v.displayName }, owner };
  const key = signer.privateKey.export({ type: 'pkcs8', format: 'der' });
  const tag = createHmac('sha256', key).update(`crowdbake unlisted owner\0${group}\0${v.id}`).digest('hex').slice(0, 32);
  return { volunteer: { id: UNLISTED_VOLUNTEER_ID, displayName: UNLISTED_VOLUNTEER_LABEL }, owner: `unlisted:${tag}` };
}

export async function provenanceBundle(d: BundleDeps, buildId: number, name: string): Promise<ProvenanceBundle | null> {
  const row = await d.store.getBuild(buildId);
  const art = row ? (await d.store.listArtifacts(buildId)).find((a) => a.name === name) : undefined;
  if (!row || !art) return null;
  const group = await d.verification?.viewOf(buildId);
  const members = group ? group.members : [{ id: buildId, worker: row.worker, verdict: 'pending' as const }];
  const attempts: SummaryAttempt[] = [];
  const attestations: ProvenanceBundle['attestations'] = [];
  const signer = d.signer();
  const groupId = group?.group ?? buildId;
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
      ...publicVolunteer(volunteer, ownerOf(token ?? { name: worker, volunteerId: null }), groupId, signer),
      verdict: group ? m.verdict : 'unverified',
      workerKey: record?.workerKey ?? null,
      acceptedAt: record?.acceptedAt ?? null,
      // The key's retirement (rotated, revoked) or the token's revocation; a statement accepted before it stays good.
      keyRevokedAt: record ? (d.keys.retired(record.worker, record.workerKey)?.retiredAt ?? (token?.revokedAt && token.workerKey === record.workerKey ? token.revokedAt : null)) : null,
      statementSha256: record?.statementSha256 ?? null,
      artifactSha256: made?.sha256 ?? null,
    });
    if (record) attestations.push({ build: record.build, attempt: record.attempt, worker: record.worker, envelope: record.envelope });
  }
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
        farm: signer.view.farm, group: groupId, replicas: group?.replicas ?? 1, verdict,
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
