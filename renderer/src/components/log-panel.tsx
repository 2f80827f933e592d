import { useLayoutEffect, useRef, useState, type ReactNode } from 'react';
import { useLogSearch } from '../hooks/use-log-search';
import { LogSearchBar } from './log-search-bar';
import { LogText } from './log-text';

/** How close to the bottom counts as "at the end" (px). */
const STICKY = 24;

/**
 * A log, followed live and searchable. It scrolls itself to the end while the reader is at the
 * end; scrolling up (or searching) stops that, "Follow the log" starts it again.
 */
export function LogPanel({ id, text, label, status, statusIsError, live, truncated, rawUrl, placeholder }: {
  id: string;
  text: string;
  label: string;
  status: string;
  statusIsError?: boolean;
  live: boolean;
  truncated?: ReactNode;
  rawUrl: string;
  placeholder?: string;
}) {
  const ref = useRef<HTMLPreElement>(null);
  const [following, setFollowing] = useState(true);
  const followingRef = useRef(true);
  const search = useLogSearch(text, ref);

  const setFollow = (f: boolean) => {
    followingRef.current = f;
    setFollowing(f);
  };

  useLayoutEffect(() => {
    const el = ref.current;
    if (el && followingRef.current && !search.query) el.scrollTop = el.scrollHeight;
  }, [text, search.query]);

  const onScroll = () => {
    const el = ref.current;
    if (!el || search.query) return;
    const atEnd = el.scrollHeight - el.scrollTop - el.clientHeight <= STICKY;
    if (atEnd !== followingRef.current) setFollow(atEnd);
  };

  const shownStatus = live && !following ? `${status} (paused scrolling)` : status;
  return (
    <div className="log-box">
      <div className="log-toolbar">
        <span className={`log-status${statusIsError ? ' text-error' : ''}`}>{shownStatus}</span>
        <LogSearchBar
          id={`${id}-search`}
          query={search.query}
          onQuery={(q) => { search.setQuery(q); if (q) setFollow(false); }}
          count={search.ranges.length}
          current={search.current}
          capped={search.capped}
          onStep={search.step}
        />
        <span className="log-tools">
          {(!following || search.query) && live && (
            <button
              type="button"
              className="button-small"
              onClick={() => {
                search.setQuery('');
                setFollow(true);
                const el = ref.current;
                if (el) el.scrollTop = el.scrollHeight;
              }}
            >
              Follow the log
            </button>
          )}
          <a href={rawUrl} target="_blank" rel="noreferrer">Raw log</a>
        </span>
      </div>
      {truncated && <p className="notice">{truncated}</p>}
      <LogText ref={ref} text={text} ranges={search.ranges} current={search.current} label={label} {...(placeholder !== undefined ? { placeholder } : {})} onScroll={onScroll} />
    </div>
  );
}
