import { useEffect } from 'react';
import { PageTitle } from '../components/page-title';
import { formatDuration, formatTime } from '../format';
import { openLog } from './agent-actions';
import { agentHref } from './agent-router';
import { useAgent } from './agent-store';
import { LocalLog } from './local-log';
import { LocalResultBadge } from './local-result-badge';
import { RerunButton } from './rerun-button';

/** One build this computer ran: what and when, its log (live while it runs, searchable), and "Run again here". */
export function LocalBuildPage({ id }: { id: number }) {
  useEffect(() => openLog(id), [id]);
  const fromLog = useAgent((s) => (s.log.id === id ? s.log.entry : null));
  const fromHistory = useAgent((s) => s.history.find((h) => h.id === id) ?? null);
  const entry = fromLog ?? fromHistory;
  const error = useAgent((s) => (s.log.id === id && s.log.status === 'error' && !s.log.entry ? s.log.error : null));
  return (
    <>
      <nav className="crumbs" aria-label="Breadcrumb">
        <a href={agentHref.history()}>History</a>
        <span aria-hidden="true"> / </span>
        <span aria-current="page">Local #{id}</span>
      </nav>
      <PageTitle title={entry ? `Local build ${id} of ${entry.builder}` : `Local build ${id}`} extra={entry && <LocalResultBadge entry={entry} />}>
        Local build #{id}{entry && <span className="title-sub"> · {entry.builder}</span>}
      </PageTitle>
      {error && <p className="form-error" role="alert">{error}</p>}
      {entry && (
        <>
          <div className="actions">{entry.canRerun && <RerunButton id={id} builder={entry.builder} />}</div>
          <dl className="summary">
            <div><dt>Builder</dt><dd><a href={agentHref.history(entry.builder)}>{entry.builder}</a></dd></div>
            <div><dt>From</dt><dd>{entry.rerunOf !== null ? <>re-run here of <a href={agentHref.entry(entry.rerunOf)}>local #{entry.rerunOf}</a></> : <>master build #{entry.buildId}, attempt {entry.attempt}</>}</dd></div>
            <div><dt>Master</dt><dd><code className="wrap">{entry.master}</code></dd></div>
            <div><dt>Revision</dt><dd>{entry.revision ? <code className="wrap">{entry.revision}</code> : <span className="muted">—</span>}</dd></div>
            <div><dt>Started</dt><dd><time dateTime={entry.startedAt}>{formatTime(entry.startedAt)}</time></dd></div>
            <div><dt>Finished</dt><dd>{entry.finishedAt ? <time dateTime={entry.finishedAt}>{formatTime(entry.finishedAt)}</time> : <span className="muted">running</span>}</dd></div>
            <div><dt>Frozen for</dt><dd>{entry.frozenMs ? formatDuration(entry.frozenMs) : '—'}</dd></div>
            {entry.message && <div className="summary-wide"><dt>Message</dt><dd>{entry.message}</dd></div>}
          </dl>
        </>
      )}
      <section className="section" aria-labelledby="local-log-heading">
        <h2 id="local-log-heading">Log</h2>
        <LocalLog id={id} />
      </section>
    </>
  );
}
