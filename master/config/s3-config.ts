import { z } from 'zod';
import { CREDENTIAL_KEYS } from './ec2-config.js';

const noCredentials = z.unknown().refine(() => false, {
  error: 'AWS credentials never go in crowdbake.yml: the S3 artifact store takes them from the AWS SDK\'s standard chain '
    + '(AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY or AWS_PROFILE in the master\'s environment, ~/.aws/credentials, SSO, or the instance role of the master\'s own machine)',
}).optional();

/**
 * `artifacts: { s3: … }` in crowdbake.yml: artifacts and finished builds' logs in an
 * S3-compatible bucket, so that every master of a farm serves every build's artifacts and
 * finished logs (master/log-archive.ts). Absent: local disk (`DATA/artifacts`, `DATA/logs`,
 * or the shared PostgreSQL's log rows), the default.
 */
export const S3ArtifactsConfigSchema = z.strictObject({
  bucket: z.string().regex(/^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$/, 'an S3 bucket name: 3-63 lowercase letters, digits, dots and hyphens'),
  /** Keys start with this (e.g. `crowdbake/`); default none. */
  prefix: z.string().max(200).regex(/^[A-Za-z0-9!_.*'()/-]*$/, 'letters, digits and !_.*\'()/- only').default(''),
  region: z.string().min(1).max(50).default('us-east-1'),
  /** An S3-compatible service (MinIO, Ceph, Garage, …): its URL. */
  endpoint: z.url({ protocol: /^https?$/ }).optional(),
  /** Path-style URLs (`ENDPOINT/BUCKET/KEY`), which most S3-compatible services want. */
  forcePathStyle: z.boolean().default(false),
  ...Object.fromEntries(CREDENTIAL_KEYS.map((k) => [k, noCredentials])) as Record<(typeof CREDENTIAL_KEYS)[number], typeof noCredentials>,
});
export type S3ArtifactsConfig = Pick<z.output<typeof S3ArtifactsConfigSchema>, 'bucket' | 'prefix' | 'region' | 'endpoint' | 'forcePathStyle'>;

export const ArtifactsConfigSchema = z.strictObject({ s3: S3ArtifactsConfigSchema.optional() }).default(() => ({}));
