import { useEffect, useLayoutEffect, useMemo, useState, type RefObject } from 'react';
import { findMatches, stepMatch } from '../log-search';

/** Search state for one log: the query, its matches, the current one (kept in view). */
export function useLogSearch(text: string, pre: RefObject<HTMLPreElement | null>) {
  const [query, setQuery] = useState('');
  const [current, setCurrent] = useState(-1);
  const { ranges, capped } = useMemo(() => findMatches(text, query), [text, query]);

  // A new query starts at its first match; a growing log keeps the current one.
  const first = ranges.length ? 0 : -1;
  useEffect(() => setCurrent(first), [query]);
  useEffect(() => { if (current >= ranges.length) setCurrent(ranges.length ? ranges.length - 1 : -1); }, [ranges.length, current]);

  useLayoutEffect(() => {
    const el = pre.current;
    const mark = el?.querySelector<HTMLElement>('mark.current');
    if (!el || !mark) return;
    const top = mark.offsetTop;
    if (top < el.scrollTop || top > el.scrollTop + el.clientHeight - 24) el.scrollTop = Math.max(0, top - el.clientHeight / 2);
  }, [current, query, pre]);

  return {
    query,
    setQuery,
    ranges,
    capped,
    current,
    step: (direction: 1 | -1) => setCurrent((c) => stepMatch(c, ranges.length, direction)),
  };
}
