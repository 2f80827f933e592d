import { headKeys, oldHead, seenDelivery, withHead, type PushToCheck, type ReplayGuard } from '../sources/webhook-dedupe.js';
import type { Runner } from './postgres-claims.js';

/** Deliveries older than this are forgotten (the forges retry for hours, not for days). */
const KEEP_DELIVERIES = '7 days';
/** The advisory lock all masters take to check and record a delivery (one at a time across the farm). */
const WEBHOOK_LOCK = 0x63726f77_686f6f6bn; // "crowhook"

/**
 * Webhook replay protection for several masters on one PostgreSQL (the same rules as
 * `WebhookDedupe`, sources/webhook-dedupe.ts, which keeps them in one master's file): a forge
 * retrying a delivery, or a captured push sent again, may reach any master behind the load
 * balancer. The check and the record are one transaction under an advisory lock, so two
 * masters given the same delivery at once accept it once.
 */
export class PostgresWebhookDedupe implements ReplayGuard {
  private checks = 0;

  constructor(private readonly run: Runner) {}

  check(id: string | null, push: PushToCheck | null): Promise<string | null> {
    // PostgreSQL text cannot hold the NUL that separates repository and branch in a key.
    const keys = headKeys(push).map((k) => k.replaceAll('\0', '\u001f'));
    if (id === null && keys.length === 0) return Promise.resolve(null);
    const sweep = ++this.checks % 1000 === 1;
    return this.run(async (c) => {
      await c.query('BEGIN');
      try {
        await c.query('SELECT pg_advisory_xact_lock($1)', [WEBHOOK_LOCK]);
        if (sweep) await c.query(`DELETE FROM webhook_deliveries WHERE at < now() - interval '${KEEP_DELIVERIES}'`);
        if (id !== null && (await c.query('SELECT 1 FROM webhook_deliveries WHERE id = $1', [id])).rows.length) {
          await c.query('ROLLBACK');
          return seenDelivery(id);
        }
        const rows = keys.length ? (await c.query<{ key: string; heads: string }>('SELECT key, heads FROM webhook_heads WHERE key = ANY($1::text[])', [keys])).rows : [];
        const past = new Map(rows.map((r) => [r.key, JSON.parse(r.heads) as string[]]));
        for (const k of keys) {
          const old = oldHead(past.get(k) ?? [], push!);
          if (old) { await c.query('ROLLBACK'); return old; }
        }
        if (id !== null) await c.query('INSERT INTO webhook_deliveries (id, at) VALUES ($1, now())', [id]);
        for (const k of keys) {
          await c.query('INSERT INTO webhook_heads (key, heads) VALUES ($1, $2) ON CONFLICT (key) DO UPDATE SET heads = EXCLUDED.heads',
            [k, JSON.stringify(withHead(past.get(k) ?? [], push!.after))]);
        }
        await c.query('COMMIT');
        return null;
      } catch (e) {
        await c.query('ROLLBACK').catch(() => undefined);
        throw e;
      }
    });
  }
}
