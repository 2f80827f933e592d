import { existsSync, mkdirSync, readFileSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import * as z from 'zod';
import { BuildSpecSchema } from '../../protocol/build-spec.js';
import {
  AttemptStatementSchema, buildDefinitionOf, CROWDBAKE_BUILD_TYPE, CROWDBAKE_BUILD_TYPE_V1, EnvelopeSchema, IN_TOTO_PAYLOAD_TYPE, statementMismatch, type Envelope,
} from '../../protocol/provenance.js';
import { describeIssues } from '../../protocol/parse.js';
import { redactUrl } from '../../protocol/source-url.js';
import type { BuildRow, Store } from '../store/store.js';
import { canonicalSha256, publicKeyOf, sha256Hex, verifyEnvelope } from './dsse.js';

/** The accepted statement of a build's last successful attempt: DATA/provenance/<build>.json. */
export const AttestationRecordSchema = z.strictObject({
  build: z.number().int().positive(),
  attempt: z.number().int().positive(),
  worker: z.string(),
  /** The key it verified with, as enrolled at that time (SPKI DER, base64). */
  workerKey: z.string(),
  acceptedAt: z.string(),
  statementSha256: z.string(),
  envelope: EnvelopeSchema,
});
export type AttestationRecord = z.infer<typeof AttestationRecordSchema>;

export interface AttemptFinish {
  row: BuildRow;
  worker: string;
  /** The spec the master sent with the assignment (null: not known). */
  sent: unknown;
  /** The artifacts this attempt uploaded, each checked against its announced size and sha256. */
  received: { name: string; size: number; sha256: string }[];
  envelope: Envelope | undefined;
  /** The builder says `provenance: required`. */
  required: boolean;
}

/**
 * The master's side of a worker's statement ([provenance]). Runs on the master when a worker
 * reports an attempt finished with success, before the end is stored: the envelope is a
 * worker message, so it is only parsed (zod, bounded by MAX_STATEMENT_BYTES) and checked,
 * never acted on. The key it is checked with comes from the store (enrolled when the worker
 * joined), never from the message; what it must state comes from the master's own records
 * of this attempt (the spec it sent, the revision reported before the steps, the artifacts
 * it received and hashed). A refusal is a reason string: the coordinator requeues the build
 * elsewhere and flags the worker.
 */
export class Attestations {
  private readonly dir: string;

  constructor(private readonly store: Store, dataDir: string) {
    this.dir = join(dataDir, 'provenance');
    mkdirSync(this.dir, { recursive: true });
  }

  /**
   * Null when the attempt may finish (its statement is stored if it had one); else why it is
   * refused — and then the artifact rows this attempt uploaded are removed, so that no listing,
   * download or bundle names them even when the build ends here (its last attempt); the
   * coordinator removes their bytes.
   */
  async accept(f: AttemptFinish): Promise<string | null> {
    const why = await this.check(f);
    if (why !== null) await this.store.deleteArtifacts(f.row.id, f.row.attempt);
    return why;
  }

  private async check(f: AttemptFinish): Promise<string | null> {
    const file = this.file(f.row.id);
    if (!f.envelope) {
      rmSync(file, { force: true });
      return f.required ? 'sent no signed statement for its attempt, and the builder says provenance: required' : null;
    }
    const token = await this.store.getToken(f.worker);
    if (!token?.workerKey) return 'sent a signed statement, but no key is enrolled for it (a `token create` worker): refused, not trusted';
    if (token.revokedAt) return `sent a statement signed after its key was revoked (${token.revokedAt})`;
    const key = publicKeyOf(token.workerKey);
    if (!key) return 'its enrolled key is not an Ed25519 key';
    if (f.envelope.payloadType !== IN_TOTO_PAYLOAD_TYPE) return `provenance.payloadType is "${f.envelope.payloadType}", not ${IN_TOTO_PAYLOAD_TYPE}`;
    const payload = verifyEnvelope(f.envelope, key);
    if (!payload) return 'sent a statement whose signature does not verify with the key enrolled for it';
    let raw: unknown;
    try { raw = JSON.parse(payload.toString('utf8')); } catch { return 'sent a signed statement that is not JSON'; }
    const parsed = AttemptStatementSchema.safeParse(raw);
    if (!parsed.success) return `sent a statement that is not an in-toto SLSA statement (${describeIssues(parsed.error).slice(0, 300)})`;
    const spec = f.sent !== null && f.sent !== undefined ? BuildSpecSchema.safeParse(JSON.parse(JSON.stringify(f.sent))) : null;
    const source = spec?.success && spec.data.source ? { git: redactUrl(spec.data.source.git), branch: spec.data.source.branch } : null;
    const mismatch = statementMismatch(parsed.data, {
      worker: f.worker, buildId: f.row.id, attempt: f.row.attempt, builder: f.row.builder, source,
      revision: f.row.revision, artifacts: f.received,
      // By buildType: v2 states the spec without its executor (what the build is; the executor is checked below), v1 the whole spec.
      specSha256: spec?.success ? {
        [CROWDBAKE_BUILD_TYPE]: canonicalSha256(buildDefinitionOf(spec.data, CROWDBAKE_BUILD_TYPE)),
        [CROWDBAKE_BUILD_TYPE_V1]: canonicalSha256(buildDefinitionOf(spec.data, CROWDBAKE_BUILD_TYPE_V1)),
      } : null,
      executor: spec?.success ? spec.data.executor : null,
      environment: spec?.success ? { base: spec.data.environment.base, setupLines: spec.data.environment.setup.length, sha256: canonicalSha256(spec.data.environment) } : null,
    });
    if (mismatch) return `sent a statement that does not match what it uploaded: ${mismatch}`;
    const record: AttestationRecord = {
      build: f.row.id, attempt: f.row.attempt, worker: f.worker, workerKey: token.workerKey,
      acceptedAt: new Date().toISOString(), statementSha256: sha256Hex(payload), envelope: f.envelope,
    };
    writeFileSync(`${file}.tmp`, `${JSON.stringify(record)}\n`);
    renameSync(`${file}.tmp`, file);
    return null;
  }

  /** The stored statement of a build, or null (unsigned, or not finished). */
  get(buildId: number): AttestationRecord | null {
    const file = this.file(buildId);
    if (!existsSync(file)) return null;
    const r = AttestationRecordSchema.safeParse(JSON.parse(readFileSync(file, 'utf8')));
    if (!r.success) throw new Error(`${file} is damaged: ${describeIssues(r.error)}`);
    return r.data;
  }

  private file(buildId: number): string {
    return join(this.dir, `${buildId}.json`);
  }
}
