/**
 * The dashboard's first requests, sent by the small entry (boot.ts) before React and the
 * protocol's schemas are loaded, so the answers travel while the rest of the bundle is fetched
 * and run. api.ts takes each answer once (`takePrefetched`) and checks it against the schemas as
 * it would a request of its own; nothing here looks inside them except the first paint, which
 * shows the Builds page's first rows as text (first-rows.ts). No React, no zod. app.js and the
 * dashboard's chunks are separate bundles, each with its own copy of this module: boot.ts hands
 * its answers over (`prefetchedAnswers` → `adoptPrefetched`).
 */

export const API_BASE = '/api/v1';

export interface BuildsQuery {
  builder?: string;
  state?: string;
  limit?: number;
  /** Only builds with an id below this one (the next page of older builds). */
  before?: number;
}

/** The path (under API_BASE) of a page of builds. */
export function buildsPath(query: BuildsQuery = {}): string {
  const params = new URLSearchParams();
  if (query.builder) params.set('builder', query.builder);
  if (query.state) params.set('state', query.state);
  if (query.limit !== undefined) params.set('limit', String(query.limit));
  if (query.before !== undefined) params.set('before', String(query.before));
  const qs = params.toString();
  return `/builds${qs ? `?${qs}` : ''}`;
}

/** Builds fetched for the Builds page at start and after a reconnect. */
export const RECENT_LIMIT = 100;

/** What every dashboard page loads first (`refreshAll` in store/actions.ts). */
export const FIRST_LOAD = {
  builders: '/builders',
  workers: '/workers',
  recent: buildsPath({ limit: RECENT_LIMIT }),
  queued: buildsPath({ state: 'queued', limit: 1000 }),
} as const;

const prefetched = new Map<string, Promise<Response>>();
let used = false;

/** The same GET api.ts's `request` sends. */
export function getFromMaster(path: string): Promise<Response> {
  return fetch(`${API_BASE}${path}`, { headers: { accept: 'application/json' } });
}

/** Sends the first requests now; each answer waits for api.ts (or the first paint, on a clone). */
export function prefetchFirstLoad(): void {
  for (const path of Object.values(FIRST_LOAD)) {
    const answer = getFromMaster(path);
    answer.catch(() => undefined); // a failure is reported when api.ts takes it
    prefetched.set(path, answer);
  }
}

/** The answers prefetchFirstLoad asked for (boot.ts hands them to the dashboard, a bundle of its own). */
export function prefetchedAnswers(): ReadonlyMap<string, Promise<Response>> {
  return new Map(prefetched);
}

/** Takes the answers boot.ts asked for (in the dashboard's copy of this module). */
export function adoptPrefetched(answers: ReadonlyMap<string, Promise<Response>>): void {
  for (const [path, answer] of answers) prefetched.set(path, answer);
}

/** A prefetched answer for the plain GET of `path`, at most once; undefined when there is none. */
export function takePrefetched(path: string): Promise<Response> | undefined {
  const answer = prefetched.get(path);
  if (answer) {
    prefetched.delete(path);
    used = true;
  }
  return answer;
}

/** Whether any answer was taken from the prefetch (then it was asked for before the events socket listened). */
export function usedPrefetch(): boolean {
  return used;
}

/** A prefetched answer's JSON, for the first paint: null when it failed or is not JSON (api.ts reports that). */
export async function peekJson(path: string): Promise<unknown> {
  const answer = prefetched.get(path);
  if (!answer) return null;
  try {
    const res = await answer;
    return res.ok ? await res.clone().json() : null;
  } catch {
    return null;
  }
}
