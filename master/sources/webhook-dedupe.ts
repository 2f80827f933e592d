import { readFileSync, renameSync, writeFileSync } from 'node:fs';
import type { IncomingHttpHeaders } from 'node:http';
import { join } from 'node:path';
import type { Provider } from './webhook-payload.js';
import { repoKey } from './repo-url.js';
import { log } from '../log.js';

/** Deliveries remembered (the forges retry a delivery for hours, not for thousands of pushes). */
const MAX_DELIVERIES = 10_000;
/** Past heads remembered per repository and branch. */
const MAX_HEADS = 500;

const DELIVERY_HEADER: Record<Provider, string[]> = {
  github: ['x-github-delivery'],
  gitea: ['x-gitea-delivery', 'x-github-delivery'],
  gitlab: ['x-gitlab-event-uuid', 'idempotency-key'],
};

/** The forge's id of this delivery (its retries keep it), or null when it sends none. */
export function deliveryId(provider: Provider, headers: IncomingHttpHeaders): string | null {
  for (const h of DELIVERY_HEADER[provider]) {
    const v = headers[h];
    const s = (Array.isArray(v) ? v[0] : v)?.trim();
    if (s) return `${provider}:${s.slice(0, 200)}`;
  }
  return null;
}

/**
 * Replay protection for webhooks, kept in DATA/webhooks.json (bounded, written atomically):
 *
 * - a delivery id seen before is "already seen" (a retry, or a captured request sent again);
 * - a push whose `after` was already a head of that branch, and is not the newest one,
 *   is refused: the signature covers the body, not the delivery id, so a captured push can
 *   come back under a fresh id, and it would rebuild (and re-publish) an old commit. A push
 *   never legitimately moves a branch back to a commit it already announced, except a
 *   deliberate rollback by force-push — the admin builds that one with Force.
 */
export class WebhookDedupe {
  private readonly file: string;
  private deliveries: string[] = [];
  private readonly seen = new Set<string>();
  private heads: Record<string, string[]> = {};

  constructor(dataDir: string) {
    this.file = join(dataDir, 'webhooks.json');
    try {
      const j = JSON.parse(readFileSync(this.file, 'utf8')) as { deliveries?: unknown; heads?: unknown };
      if (Array.isArray(j.deliveries)) this.deliveries = j.deliveries.filter((d): d is string => typeof d === 'string').slice(-MAX_DELIVERIES);
      if (j.heads && typeof j.heads === 'object') {
        for (const [k, v] of Object.entries(j.heads as Record<string, unknown>)) {
          if (Array.isArray(v)) this.heads[k] = v.filter((s): s is string => typeof s === 'string').slice(-MAX_HEADS);
        }
      }
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code !== 'ENOENT') log.warn(`${this.file} is unreadable (${(e as Error).message}); starting with no remembered webhook deliveries`);
    }
    for (const d of this.deliveries) this.seen.add(d);
  }

  /** Why this delivery is refused (a replay), or null; records it when it is new. */
  check(id: string | null, push: { repoUrls: string[]; ref: string; after: string } | null): string | null {
    if (id !== null && this.seen.has(id)) return `delivery ${id.slice(id.indexOf(':') + 1)} was already seen; nothing was built`;
    const keys = push ? [...new Set(push.repoUrls.map((u) => `${repoKey(u)}\0${push.ref}`))] : [];
    for (const k of keys) {
      const past = this.heads[k] ?? [];
      const at = past.lastIndexOf(push!.after);
      if (at !== -1 && at !== past.length - 1) {
        return `${push!.ref} was already at ${push!.after} before its newest head ${past[past.length - 1]}: an old push is not rebuilt (a replay?); force a build to roll back`;
      }
    }
    if (id !== null) {
      this.seen.add(id);
      this.deliveries.push(id);
      if (this.deliveries.length > MAX_DELIVERIES) this.seen.delete(this.deliveries.shift()!);
    }
    for (const k of keys) {
      const past = (this.heads[k] ?? []).filter((s) => s !== push!.after);
      past.push(push!.after);
      this.heads[k] = past.slice(-MAX_HEADS);
    }
    if (id !== null || keys.length > 0) this.save();
    return null;
  }

  private save(): void {
    const tmp = `${this.file}.tmp`;
    try {
      writeFileSync(tmp, JSON.stringify({ deliveries: this.deliveries, heads: this.heads }), { mode: 0o600 });
      renameSync(tmp, this.file);
    } catch (e) {
      log.error(`cannot write ${this.file}: ${(e as Error).message}`);
    }
  }
}
