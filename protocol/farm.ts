/**
 * Several masters on one PostgreSQL: the constants both the masters and their documentation
 * use (master/store/claims.ts, master/farm/).
 */

/**
 * A master's lease on its running attempts, renewed every third of it (`--lease`). Four
 * default heartbeats (15 s): a worker notices a paused master after 2.5 to 3 silent
 * heartbeats, and must reach another one before the paused master's builds are requeued.
 */
export const DEFAULT_LEASE_MS = 60_000;

/** The singletons elected by lease: one master at a time runs each. */
export const SINGLETONS = ['change-sources', 'latent-workers', 'retention'] as const;
export type Singleton = (typeof SINGLETONS)[number];

/** The PostgreSQL channel that wakes masters when the queue changed (never the record: they re-read the table). */
export const QUEUE_CHANNEL = 'crowdbake_queue';

/** The PostgreSQL channel on which masters relay their dashboards' events to each other (master/farm/event-relay.ts). */
export const EVENTS_CHANNEL = 'crowdbake_events';
