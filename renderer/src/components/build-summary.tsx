import type { BuildView } from '../../../protocol/api.js';
import { buildDuration, formatTime } from '../format';
import { href } from '../router';
import { useDashboard } from '../store/hooks';
import { selectBuilder } from '../store/selectors';
import { RunningDuration } from './running-duration';

/** The facts of a build as a description list. */
export function BuildSummary({ build: b }: { build: BuildView }) {
  const running = b.state === 'running' || b.state === 'frozen';
  const hasSource = useDashboard((s) => selectBuilder(b.builder)(s)?.source != null);
  return (
    <dl className="summary">
      <div><dt>Builder</dt><dd><a href={href.builds(b.builder)}>{b.builder}</a></dd></div>
      <div><dt>Worker</dt><dd>{b.worker ?? <span className="muted">not assigned</span>}</dd></div>
      <div>
        <dt>Revision</dt>
        <dd>
          {b.revision
            ? <code className="wrap">{b.revision}</code>
            : <span className="muted">{hasSource ? 'the branch head' : 'none (no source)'}</span>}
        </dd>
      </div>
      <div><dt>Reason</dt><dd>{b.reason ?? <span className="muted">—</span>}</dd></div>
      <div><dt>Queued</dt><dd><time dateTime={b.queuedAt}>{formatTime(b.queuedAt)}</time></dd></div>
      <div><dt>Started</dt><dd>{b.startedAt ? <time dateTime={b.startedAt}>{formatTime(b.startedAt)}</time> : <span className="muted">—</span>}</dd></div>
      <div><dt>Finished</dt><dd>{b.finishedAt ? <time dateTime={b.finishedAt}>{formatTime(b.finishedAt)}</time> : <span className="muted">—</span>}</dd></div>
      <div><dt>Duration</dt><dd>{running ? <RunningDuration build={b} /> : buildDuration(b)}</dd></div>
      <div><dt>Attempt</dt><dd>{b.attempt}</dd></div>
      {b.message && <div className="summary-wide"><dt>Message</dt><dd>{b.message}</dd></div>}
    </dl>
  );
}
