import { createHmac } from 'node:crypto';
import type { IncomingHttpHeaders } from 'node:http';
import * as z from 'zod';
import { describeIssues } from '../../protocol/parse.js';
import { secretsEqual } from '../tokens.js';

export const PROVIDERS = ['github', 'gitlab', 'gitea'] as const;
export type Provider = (typeof PROVIDERS)[number];

export function isProvider(name: string): name is Provider {
  return (PROVIDERS as readonly string[]).includes(name);
}

/** A push, as every provider describes it. */
export interface PushEvent {
  /** Every URL the payload gives for the repository (clone, ssh, web). */
  repoUrls: string[];
  /** `refs/heads/main`, `refs/tags/v1`, … */
  ref: string;
  /** The new head; null when the push deleted the ref. */
  after: string | null;
}

const SIGNATURE_HEADER: Record<Provider, string> = {
  github: 'X-Hub-Signature-256', gitea: 'X-Gitea-Signature', gitlab: 'X-Gitlab-Token',
};

/** Checks the request against the shared secret; returns null when it is authentic, else what is wrong. */
export function verifySignature(provider: Provider, headers: IncomingHttpHeaders, body: Buffer, secret: string): string | null {
  const name = SIGNATURE_HEADER[provider];
  const value = header(headers, name);
  if (value === null) return `missing ${name} header: set the webhook's secret to the master's (DATA/webhook-${provider}.secret or $CROWDBAKE_WEBHOOK_SECRET_${provider.toUpperCase()})`;
  if (provider === 'gitlab') return secretsEqual(value, secret) ? null : `${name} does not match the master's webhook secret`;
  const hex = provider === 'github' ? /^sha256=([0-9a-f]{64})$/i.exec(value)?.[1] : /^([0-9a-f]{64})$/i.exec(value)?.[1];
  if (!hex) return `${name} is malformed: expected ${provider === 'github' ? '"sha256=" and ' : ''}64 hex digits of HMAC-SHA256`;
  const expected = createHmac('sha256', secret).update(body).digest('hex');
  return secretsEqual(hex.toLowerCase(), expected) ? null : `${name} does not match the body: signed with a different secret, or the body was changed`;
}

/** `push` for push events; otherwise the event's own name (`ping`, `Tag Push Hook`, …), or null when the request names none. */
export function eventName(provider: Provider, headers: IncomingHttpHeaders): string | null {
  if (provider === 'gitlab') {
    const e = header(headers, 'X-Gitlab-Event');
    return e === 'Push Hook' ? 'push' : e;
  }
  return provider === 'gitea' ? header(headers, 'X-Gitea-Event') ?? header(headers, 'X-GitHub-Event') : header(headers, 'X-GitHub-Event');
}

const Url = z.string().nullish();
const Sha = z.string().regex(/^[0-9a-f]{40}(?:[0-9a-f]{24})?$/, 'must be a 40 or 64 hex digit commit id');
const HubPush = z.object({
  ref: z.string().min(1),
  after: Sha,
  deleted: z.boolean().optional(),
  repository: z.object({ clone_url: Url, ssh_url: Url, html_url: Url, git_url: Url, url: Url }),
});
const LabPush = z.object({
  ref: z.string().min(1),
  after: Sha,
  project: z.object({ git_http_url: Url, git_ssh_url: Url, web_url: Url, http_url: Url, ssh_url: Url }).optional(),
  repository: z.object({ git_http_url: Url, git_ssh_url: Url, url: Url, homepage: Url }).optional(),
});

/** The push in a parsed JSON body, or a message naming what is missing. */
export function parsePush(provider: Provider, body: unknown): PushEvent | string {
  const r = (provider === 'gitlab' ? LabPush : HubPush).safeParse(body);
  if (!r.success) return `not a ${provider} push payload: ${describeIssues(r.error)}`;
  const d = r.data;
  const places: (Record<string, string | null | undefined> | undefined)[] = 'project' in d ? [d.project, d.repository] : [d.repository];
  const repoUrls = [...new Set(places.flatMap((p) => Object.values(p ?? {}).filter((u): u is string => typeof u === 'string' && u !== '')))];
  if (repoUrls.length === 0) return `the ${provider} push payload names no repository URL`;
  const deleted = /^0+$/.test(d.after) || ('deleted' in d && d.deleted === true);
  return { repoUrls, ref: d.ref, after: deleted ? null : d.after };
}

function header(headers: IncomingHttpHeaders, name: string): string | null {
  const v = headers[name.toLowerCase()];
  const s = Array.isArray(v) ? v[0] : v;
  return s === undefined || s.trim() === '' ? null : s.trim();
}
