import { useLayoutEffect, useRef, useState } from 'react';
import type { BuildView } from '../../../protocol/api.js';
import { logUrl } from '../api';
import { useSelection } from '../store/hooks';

/** How close to the bottom counts as "at the end" (px). */
const STICKY = 24;

/**
 * The build log: loaded once, then followed live. It scrolls itself to the end while the
 * reader is at the end; scrolling up stops that, "Follow the log" starts it again.
 */
export function LogView({ build }: { build: BuildView }) {
  const { log, logStatus, logError, logTruncated } = useSelection();
  const ref = useRef<HTMLPreElement>(null);
  const [following, setFollowing] = useState(true);
  const followingRef = useRef(true);

  const setFollow = (f: boolean) => {
    followingRef.current = f;
    setFollowing(f);
  };

  useLayoutEffect(() => {
    const el = ref.current;
    if (el && followingRef.current) el.scrollTop = el.scrollHeight;
  }, [log]);

  const onScroll = () => {
    const el = ref.current;
    if (!el) return;
    const atEnd = el.scrollHeight - el.scrollTop - el.clientHeight <= STICKY;
    if (atEnd !== followingRef.current) setFollow(atEnd);
  };

  const live = build.state === 'running' || build.state === 'frozen';
  let status: string;
  if (logStatus === 'error') status = `Could not load the log: ${logError ?? 'unknown error'}`;
  else if (logStatus === 'loading') status = 'Loading the log…';
  else if (live) status = following ? 'Streaming live' : 'Streaming live (paused scrolling)';
  else if (build.state === 'queued') status = 'Waiting for a worker';
  else status = 'Complete';

  return (
    <div className="log-box">
      <div className="log-toolbar">
        <span className={`log-status${logStatus === 'error' ? ' text-error' : ''}`}>{status}</span>
        <span className="log-tools">
          {!following && (
            <button
              type="button"
              className="button-small"
              onClick={() => {
                setFollow(true);
                const el = ref.current;
                if (el) el.scrollTop = el.scrollHeight;
              }}
            >
              Follow the log
            </button>
          )}
          <a href={logUrl(build.id)} target="_blank" rel="noreferrer">Raw log</a>
        </span>
      </div>
      {logTruncated && <p className="notice">Only the end of a long log is shown here; the raw log has all of it.</p>}
      <pre
        ref={ref}
        className="log"
        tabIndex={0}
        aria-label={`Log of build ${build.id}`}
        onScroll={onScroll}
      >
        {log || (logStatus === 'ready' ? (build.state === 'queued' ? '' : '(empty)') : '')}
      </pre>
    </div>
  );
}
