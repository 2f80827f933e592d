import type { KeyboardEvent } from 'react';

/** The search field of a log: Enter goes to the next match, Shift+Enter to the previous one. */
export function LogSearchBar({ id, query, onQuery, count, current, capped, onStep }: {
  id: string;
  query: string;
  onQuery(q: string): void;
  count: number;
  current: number;
  capped: boolean;
  onStep(direction: 1 | -1): void;
}) {
  const onKey = (e: KeyboardEvent<HTMLInputElement>) => {
    if (e.key === 'Enter') { e.preventDefault(); onStep(e.shiftKey ? -1 : 1); }
    if (e.key === 'Escape' && query) { e.preventDefault(); onQuery(''); }
  };
  let summary = '';
  if (query) summary = count === 0 ? 'No matches' : `${current + 1} of ${count}${capped ? '+' : ''}`;
  return (
    <div className="log-search" role="search" aria-label="Search the log">
      <label htmlFor={id} className="sr-only">Search the log</label>
      <input
        id={id}
        type="search"
        placeholder="Search the log"
        value={query}
        onChange={(e) => onQuery(e.target.value)}
        onKeyDown={onKey}
        spellCheck={false}
        autoComplete="off"
      />
      <button type="button" className="button-small" onClick={() => onStep(-1)} disabled={count === 0} aria-label="Previous match">↑</button>
      <button type="button" className="button-small" onClick={() => onStep(1)} disabled={count === 0} aria-label="Next match">↓</button>
      <span className="log-search-count" role="status" aria-live="polite">{summary}</span>
    </div>
  );
}
