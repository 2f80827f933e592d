import { useBuilders, useBuildersLoaded, useDashboard } from '../store/hooks';
import { BuilderCard } from './builder-card';
import { PageTitle } from './page-title';

export function BuildersPage() {
  const builders = useBuilders();
  const loaded = useBuildersLoaded();
  const connected = useDashboard((s) => s.workerNames.filter((n) => s.workers[n]?.connected).length);
  const broken = builders.filter((b) => b.error !== null).length;
  return (
    <>
      <PageTitle extra={loaded && (
        <p className="lede">
          {builders.length} {builders.length === 1 ? 'builder' : 'builders'} · {connected} {connected === 1 ? 'worker' : 'workers'} connected
          {broken > 0 && <> · <strong className="text-error">{broken} with config errors</strong></>}
        </p>
      )}
      >
        Builders
      </PageTitle>
      {!loaded && <p className="muted">Loading builders…</p>}
      {loaded && builders.length === 0 && (
        <div className="empty">
          <p>This master has no builders yet.</p>
          <p className="muted">Add a builder file, <code>CONFIG/builders/NAME.yml</code>; the master picks it up without a restart.</p>
        </div>
      )}
      <ul className="card-list">
        {builders.map((b) => (
          <li key={b.name}><BuilderCard builder={b} /></li>
        ))}
      </ul>
    </>
  );
}
