/**
 * Joins a build log fetched over HTTP with the `log` event chunks that arrived while the
 * request was in flight. The fetched text already holds some first chunks (those written
 * before the master read the file) and not the rest: the longest run of first chunks that the
 * fetched text ends with is dropped, the remaining chunks are appended.
 */
export function mergeLog(fetched: string, chunks: readonly string[]): string {
  let head = chunks.join('');
  for (let j = chunks.length; j > 0; j--) {
    if (head.length > 0 && fetched.endsWith(head)) return fetched + chunks.slice(j).join('');
    head = head.slice(0, head.length - chunks[j - 1]!.length);
  }
  return fetched + chunks.join('');
}

/** Keeps at most `max` characters of a log: the tail, cut at a line start when one is near. */
export function capLog(text: string, max: number): { text: string; truncated: boolean } {
  if (text.length <= max) return { text, truncated: false };
  let tail = text.slice(text.length - max);
  const nl = tail.indexOf('\n');
  if (nl >= 0 && nl < 4096) tail = tail.slice(nl + 1);
  return { text: tail, truncated: true };
}
