import * as z from 'zod';

/**
 * Executors are named on the wire, not drawn from a closed list: a worker's hello offers
 * names, the master assigns one of them. A master that does not know a newer worker's
 * executor keeps the name (shown on the dashboard) and never assigns it, so adding an
 * executor does not make older masters refuse the hello.
 */
export const ExecutorNameSchema = z.string().regex(/^[a-z][a-z0-9-]{0,31}$/, 'must be an executor name: a lowercase letter, then lowercase letters, digits or -, up to 32');

/**
 * The executors this version knows. Builder files may require one of these (or `any`); a
 * name outside the list in a builder file is a typo until this list says otherwise.
 * `isolated` ones are what `any` picks from, in this order: never `host`.
 */
export const KNOWN_EXECUTORS = [
  { name: 'container', isolated: true },
  { name: 'vm', isolated: true },
  { name: 'host', isolated: false },
] as const satisfies readonly { name: string; isolated: boolean }[];

export const KNOWN_EXECUTOR_NAMES: readonly string[] = KNOWN_EXECUTORS.map((e) => e.name);
export const ISOLATED_EXECUTORS: readonly string[] = KNOWN_EXECUTORS.filter((e) => e.isolated).map((e) => e.name);
