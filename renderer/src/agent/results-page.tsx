import { useMemo } from 'react';
import { PageTitle } from '../components/page-title';
import { formatTime } from '../format';
import { agentHref } from './agent-router';
import { resultsByBuilder, useAgent } from './agent-store';
import { LocalResultBadge } from './local-result-badge';
import { RerunButton } from './rerun-button';

/** For developers: how each builder fared on this computer, and running one again here. */
export function ResultsPage() {
  const history = useAgent((s) => s.history);
  const loaded = useAgent((s) => s.historyLoaded);
  const rows = useMemo(() => resultsByBuilder(history), [history]);
  return (
    <>
      <PageTitle>Results by builder</PageTitle>
      <p className="lede">Each builder&apos;s builds on this computer. &ldquo;Run again here&rdquo; repeats its latest build locally (same spec, not reported to the master), whatever the idle rules say.</p>
      {!loaded && <p className="muted">Loading the history…</p>}
      {loaded && rows.length === 0 && <p className="muted">Nothing has run here yet.</p>}
      {rows.length > 0 && (
        <div className="table-wrap">
          <table className="table results-table">
            <caption className="sr-only">Results per builder on this computer</caption>
            <thead>
              <tr>
                <th scope="col">Builder</th>
                <th scope="col">Latest</th>
                <th scope="col" className="num">Runs</th>
                <th scope="col" className="num">Passed</th>
                <th scope="col" className="num">Failed</th>
                <th scope="col" className="num">Other</th>
                <th scope="col">Last run</th>
                <th scope="col"><span className="sr-only">Actions</span></th>
              </tr>
            </thead>
            <tbody>
              {rows.map((r) => (
                <tr key={r.builder}>
                  <th scope="row"><a href={agentHref.history(r.builder)}>{r.builder}</a></th>
                  <td><a href={agentHref.entry(r.last.id)} aria-label={`Latest build of ${r.builder}: local #${r.last.id}`}><LocalResultBadge entry={r.last} /></a></td>
                  <td className="num">{r.runs}</td>
                  <td className="num">{r.success}</td>
                  <td className="num">{r.failure}</td>
                  <td className="num">{r.other}</td>
                  <td><time dateTime={r.last.startedAt}>{formatTime(r.last.startedAt)}</time></td>
                  <td>{r.rerunnable && <RerunButton id={r.rerunnable.id} builder={r.builder} />}</td>
                </tr>
              ))}
            </tbody>
          </table>
        </div>
      )}
    </>
  );
}
