/**
 * Several masters on one PostgreSQL: the constants both the masters and their documentation
 * use (master/store/claims.ts, master/farm/).
 */

/** A master's lease on its running attempts, renewed every third of it (`--lease`). */
export const DEFAULT_LEASE_MS = 15_000;

/** The singletons elected by lease: one master at a time runs each. */
export const SINGLETONS = ['change-sources', 'latent-workers', 'retention'] as const;
export type Singleton = (typeof SINGLETONS)[number];

/** The PostgreSQL channel that wakes masters when the queue changed (never the record: they re-read the table). */
export const QUEUE_CHANNEL = 'crowdbake_queue';
