import { useEffect, useState } from 'react';
import { PageTitle } from '../components/page-title';
import { openDashboard } from './agent-actions';
import { useAgent } from './agent-store';

/** The master this app runs: its dashboard opens in a window of its own (it is another origin, with no bridge). */
export function DashboardPage() {
  const url = useAgent((s) => s.app?.dashboardUrl ?? null);
  const [error, setError] = useState<string | null>(null);
  const open = async () => { const r = await openDashboard(); setError(r.ok ? null : r.error); };
  useEffect(() => { if (url) void open(); }, [url]);
  return (
    <>
      <PageTitle>Master dashboard</PageTitle>
      {!url && <p className="muted">This app runs no master. Start one from the tray menu (Run a master on this computer…).</p>}
      {url && (
        <div className="card">
          <p>The master on this computer serves its dashboard at <code className="wrap">{url}</code>; it opens in its own window.</p>
          <button type="button" className="button-primary" onClick={() => void open()}>Open the dashboard</button>
          {error && <p className="form-error" role="alert">{error}</p>}
        </div>
      )}
    </>
  );
}
