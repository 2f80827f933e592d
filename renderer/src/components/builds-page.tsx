import { useState } from 'react';
import { href, navigate } from '../router';
import { loadOlderBuilds } from '../store/actions';
import { useBuilderNames, useBuildsLoaded, useHistoryIds, useOlderAvailable, useQueueIds } from '../store/hooks';
import { BuildsTable } from './builds-table';
import { PageTitle } from './page-title';

/** The queue and the recent builds, newest first, optionally of one builder. */
export function BuildsPage({ builder }: { builder: string | null }) {
  const names = useBuilderNames();
  const loaded = useBuildsLoaded();
  const queued = useQueueIds(builder);
  const history = useHistoryIds(builder);
  const olderAvailable = useOlderAvailable();
  const [loadingOlder, setLoadingOlder] = useState(false);
  const [olderError, setOlderError] = useState<string | null>(null);
  // Builders whose older builds have all been loaded ('' stands for all builders).
  const [exhausted, setExhausted] = useState<ReadonlySet<string>>(new Set());
  const key = builder ?? '';
  const showOlder = (olderAvailable || builder !== null) && !exhausted.has(key);

  const older = async () => {
    setLoadingOlder(true);
    setOlderError(null);
    try {
      const more = await loadOlderBuilds(builder);
      if (!more) setExhausted((prev) => new Set([...prev, key]));
    } catch (e) {
      setOlderError(`Could not load older builds: ${(e as Error).message}`);
    } finally {
      setLoadingOlder(false);
    }
  };

  return (
    <>
      <PageTitle title={builder ? `Builds of ${builder}` : 'Builds'}>Builds</PageTitle>
      <div className="toolbar">
        <label htmlFor="builder-filter">Builder</label>
        <select
          id="builder-filter"
          value={builder ?? ''}
          onChange={(e) => navigate(href.builds(e.target.value || null))}
        >
          <option value="">All builders</option>
          {names.map((n) => <option key={n} value={n}>{n}</option>)}
        </select>
      </div>

      <section aria-labelledby="queue-heading" className="section">
        <h2 id="queue-heading">Queue <span className="count">{queued.length}</span></h2>
        {queued.length === 0
          ? <p className="muted">Nothing is waiting.</p>
          : <BuildsTable ids={queued} caption="Queued builds, in the order they will start" />}
      </section>

      <section aria-labelledby="recent-heading" className="section">
        <h2 id="recent-heading">Recent builds</h2>
        {!loaded && <p className="muted">Loading builds…</p>}
        {loaded && history.length === 0 && <p className="muted">No builds have run{builder ? ` for ${builder}` : ''} yet.</p>}
        {history.length > 0 && <BuildsTable ids={history} caption="Recent builds, newest first" />}
        {loaded && showOlder && (
          <p>
            <button type="button" onClick={() => void older()} disabled={loadingOlder}>
              {loadingOlder ? 'Loading…' : 'Load older builds'}
            </button>
          </p>
        )}
        {olderError && <p className="form-error" role="alert">{olderError}</p>}
      </section>
    </>
  );
}
