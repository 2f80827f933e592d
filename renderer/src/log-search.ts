/**
 * Finding text in a build log: every case-insensitive occurrence of the query, as [start, end)
 * character ranges, at most `max` of them (a log of a million "a" should not freeze the page).
 */
export interface LogMatches {
  ranges: [number, number][];
  /** More matches exist than `ranges` holds. */
  capped: boolean;
}

export const MAX_MATCHES = 5000;

export function findMatches(text: string, query: string, max = MAX_MATCHES): LogMatches {
  if (query === '') return { ranges: [], capped: false };
  const hay = text.toLowerCase();
  const needle = query.toLowerCase();
  const ranges: [number, number][] = [];
  let at = hay.indexOf(needle);
  while (at !== -1) {
    if (ranges.length === max) return { ranges, capped: true };
    ranges.push([at, at + needle.length]);
    at = hay.indexOf(needle, at + needle.length);
  }
  return { ranges, capped: false };
}

/** The match after (or before) `current`, wrapping around; -1 when there is none. */
export function stepMatch(current: number, count: number, direction: 1 | -1): number {
  if (count === 0) return -1;
  if (current < 0) return direction === 1 ? 0 : count - 1;
  return (current + direction + count) % count;
}
