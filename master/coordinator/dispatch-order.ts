import type { BuilderDefinition } from '../../protocol/builder-file.js';
import type { BuildRow } from '../store/store.js';

export interface Candidate {
  name: string;
  def: BuilderDefinition;
  head: BuildRow;
  /** Builds of this builder running now. */
  running: number;
}

/**
 * Whether queued build a goes before b: the builder with the higher priority first; among
 * equals, the one with fewer builds running (fair share), then the oldest queued build.
 */
export function before(a: Candidate, b: Candidate): boolean {
  if (a.def.priority !== b.def.priority) return a.def.priority > b.def.priority;
  if (a.running !== b.running) return a.running < b.running;
  return a.head.id < b.head.id;
}

/** The candidate that goes first, or null. */
export function first(candidates: Iterable<Candidate>): Candidate | null {
  let best: Candidate | null = null;
  for (const c of candidates) if (!best || before(c, best)) best = c;
  return best;
}
