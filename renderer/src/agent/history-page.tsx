import { useEffect } from 'react';
import { PageTitle } from '../components/page-title';
import { formatDuration, formatTime } from '../format';
import { navigate } from '../router';
import type { HistoryEntry } from './agent-api';
import { refreshHistory } from './agent-actions';
import { agentHref } from './agent-router';
import { useAgent } from './agent-store';
import { LocalResultBadge } from './local-result-badge';


const took = (h: HistoryEntry) => (h.finishedAt ? formatDuration(new Date(h.finishedAt).getTime() - new Date(h.startedAt).getTime()) : '—');

/** Every build this computer ran (newest first), optionally of one builder. */
export function HistoryPage({ builder }: { builder: string | null }) {
  useEffect(() => void refreshHistory(), []);
  const all = useAgent((s) => s.history);
  const loaded = useAgent((s) => s.historyLoaded);
  const error = useAgent((s) => s.historyError);
  const builders = [...new Set(all.map((h) => h.builder))].sort();
  const rows = builder ? all.filter((h) => h.builder === builder) : all;
  return (
    <>
      <PageTitle title={builder ? `History of ${builder}` : 'History'}>History</PageTitle>
      <p className="lede">The builds this computer ran, newest first, with their logs.</p>
      <div className="toolbar">
        <label htmlFor="history-builder">Builder</label>
        <select id="history-builder" value={builder ?? ''} onChange={(e) => navigate(agentHref.history(e.target.value || null))}>
          <option value="">All builders</option>
          {builders.map((b) => <option key={b} value={b}>{b}</option>)}
        </select>
      </div>
      {error && <p className="form-error" role="alert">Could not load the history: {error}</p>}
      {!loaded && !error && <p className="muted">Loading the history…</p>}
      {loaded && rows.length === 0 && <p className="muted">Nothing has run here{builder ? ` for ${builder}` : ''} yet.</p>}
      {rows.length > 0 && (
        <div className="table-wrap">
          <table className="table history-table">
            <caption className="sr-only">Builds run on this computer, newest first</caption>
            <thead>
              <tr>
                <th scope="col">Local build</th>
                <th scope="col">Builder</th>
                <th scope="col">Result</th>
                <th scope="col">Master build</th>
                <th scope="col">Started</th>
                <th scope="col" className="num">Took</th>
                <th scope="col" className="num">Frozen</th>
              </tr>
            </thead>
            <tbody>
              {rows.map((h) => (
                <tr key={h.id}>
                  <td><a href={agentHref.entry(h.id)}>Local #{h.id}</a></td>
                  <td>{h.builder}</td>
                  <td><LocalResultBadge entry={h} /></td>
                  <td>{h.rerunOf !== null ? <span className="muted">re-run here of local #{h.rerunOf}</span> : `#${h.buildId} (attempt ${h.attempt})`}</td>
                  <td><time dateTime={h.startedAt}>{formatTime(h.startedAt)}</time></td>
                  <td className="num">{took(h)}</td>
                  <td className="num">{h.frozenMs > 0 ? formatDuration(h.frozenMs) : '—'}</td>
                </tr>
              ))}
            </tbody>
          </table>
        </div>
      )}
    </>
  );
}
