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

/** A push to check against replays: the repository's URLs, the branch ref and its new head. */
export interface PushToCheck {
  repoUrls: string[];
  ref: string;
  after: string;
}

/** Replay protection: why this delivery is refused, or null (and it is recorded). One master's file, or the farm's PostgreSQL. */
export interface ReplayGuard {
  check(id: string | null, push: PushToCheck | null): string | null | Promise<string | null>;
}

/** The keys a push's heads are remembered under: one per repository and branch. */
export function headKeys(push: PushToCheck | null): string[] {
  return push ? [...new Set(push.repoUrls.map((u) => `${repoKey(u)}\0${push.ref}`))] : [];
}

/** Why `after` is an old head of the branch (it was one, and is not the newest), or null. */
export function oldHead(past: readonly string[], push: PushToCheck): string | null {
  const at = past.lastIndexOf(push.after);
  if (at === -1 || at === past.length - 1) return null;
  return `${push.ref} was already at ${push.after} before its newest head ${past[past.length - 1]}: an old push is not rebuilt (a replay?); force a build to roll back`;
}

/** The branch's remembered heads after `after` (it moves to the end), at most MAX_HEADS. */
export function withHead(past: readonly string[], after: string): string[] {
  return [...past.filter((s) => s !== after), after].slice(-MAX_HEADS);
}

/** The words for a delivery id seen before. */
export function seenDelivery(id: string): string {
  return `delivery ${id.slice(id.indexOf(':') + 1)} was already seen; nothing was built`;
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
export class WebhookDedupe implements ReplayGuard {
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
  check(id: string | null, push: PushToCheck | null): string | null {
    if (id !== null && this.seen.has(id)) return seenDelivery(id);
    const keys = headKeys(push);
    for (const k of keys) {
      const old = oldHead(this.heads[k] ?? [], push!);
      if (old) return old;
    }
    if (id !== null) {
      this.seen.add(id);
      this.deliveries.push(id);
      if (this.deliveries.length > MAX_DELIVERIES) this.seen.delete(this.deliveries.shift()!);
    }
    for (const k of keys) this.heads[k] = withHead(this.heads[k] ?? [], push!.after);
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
