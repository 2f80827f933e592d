import { useEffect, useState } from 'react';
import { PageTitle } from '../components/page-title';
import { formatDuration } from '../format';
import { openLog } from './agent-actions';
import { AgentControls } from './agent-controls';
import { agentHref } from './agent-router';
import { STATE_LABEL, STATE_MEANING } from './agent-state-label';
import { useAgent } from './agent-store';
import { LocalLog } from './local-log';

/** This computer at a glance: its state and why, pause/snooze/resume, and the running build's live log. */
export function OverviewPage() {
  const status = useAgent((s) => s.status);
  const error = useAgent((s) => s.statusError);
  const running = status?.current[0] ?? null;
  // The last build seen here stays on the page, with its whole log, after it ends.
  const [last, setLast] = useState(running);
  if (running && running !== last && (running.buildId !== last?.buildId || running.frozen !== last.frozen || running.historyId !== last.historyId)) setLast(running);
  const current = running ?? last;
  const historyId = current?.historyId ?? null;
  useEffect(() => {
    if (historyId !== null) openLog(historyId);
  }, [historyId]);

  return (
    <>
      <PageTitle title={status ? `${status.name}: ${STATE_LABEL[status.state]}` : 'This computer'}>This computer</PageTitle>
      {error && <div className="banner banner-error" role="alert">The agent is not answering: {error}</div>}
      {!status && !error && <p className="muted">Asking the agent…</p>}
      {status && (
        <>
          <section className={`state-card state-${status.state}`} aria-labelledby="state-heading">
            <div>
              <h2 id="state-heading" className="state-word">
                <span className="sr-only">State: </span>{STATE_LABEL[status.state]}
              </h2>
              <p className="state-meaning">{STATE_MEANING[status.state]}</p>
              <p className="state-reason"><span className="muted">Right now: </span>{status.reason}</p>
            </div>
            <dl className="facts">
              <div><dt>Worker</dt><dd>{status.name}</dd></div>
              <div><dt>Master</dt><dd><code className="wrap">{status.master.url}</code> {status.master.connected ? '(connected)' : '(not connected)'}</dd></div>
              <div><dt>Idle source</dt><dd>{status.idleSource.name}{status.idleMs !== null ? ` · idle ${formatDuration(status.idleMs)}` : ''}</dd></div>
              <div><dt>Executors</dt><dd>{status.executors.join(', ')}</dd></div>
              {status.cpuCap != null && <div><dt>CPU cap now</dt><dd>{status.cpuCap} core(s)</dd></div>}
              {status.temperatureC != null && <div><dt>Temperature</dt><dd>{Math.round(status.temperatureC)} °C{status.preferences.maxTemperatureC !== null ? ` (cap ${status.preferences.maxTemperatureC} °C)` : ''}</dd></div>}
            </dl>
          </section>
          <AgentControls />
          <section className="section" aria-labelledby="current-heading">
            <h2 id="current-heading">{running || !current ? 'Current build' : 'Last build'}</h2>
            {!current && <p className="muted">Nothing is running here. <a href={agentHref.history()}>What ran before</a></p>}
            {current && (
              <>
                <p>
                  <strong>{current.builder}</strong> · build #{current.buildId}{running && current.frozen ? ' · frozen' : ''}{running ? '' : ' · ended'}
                  {current.historyId !== undefined && <> · <a href={agentHref.entry(current.historyId)}>open its page</a></>}
                </p>
                {current.historyId !== undefined && <LocalLog id={current.historyId} />}
              </>
            )}
          </section>
        </>
      )}
    </>
  );
}
