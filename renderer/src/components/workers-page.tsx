import { useDashboard, useWorkerNames, useWorkersLoaded } from '../store/hooks';
import { CrowdAdmin } from './crowd-admin';
import { PageTitle } from './page-title';
import { WorkerRow } from './worker-row';

/** Every worker the master knows: connected or not, what it offers and what it runs now. */
export function WorkersPage() {
  const names = useWorkerNames();
  const loaded = useWorkersLoaded();
  const connected = useDashboard((s) => s.workerNames.filter((n) => s.workers[n]?.connected).length);
  return (
    <>
      <PageTitle extra={loaded && <p className="lede">{connected} of {names.length} connected</p>}>Workers</PageTitle>
      {!loaded && <p className="muted">Loading workers…</p>}
      {loaded && names.length === 0 && (
        <div className="empty">
          <p>No worker has connected yet.</p>
          <p className="muted">Invite volunteers below (they run <code>crowdbake join LINK</code>), or create a token with <code>crowdbake token create --name NAME</code> and start <code>crowdbake worker</code> with it.</p>
        </div>
      )}
      {names.length > 0 && (
        <div className="table-wrap">
          <table className="table workers-table">
            <caption className="sr-only">Workers</caption>
            <thead>
              <tr>
                <th scope="col">Worker</th>
                <th scope="col">Status</th>
                <th scope="col">Labels</th>
                <th scope="col">Executors</th>
                <th scope="col" className="num">CPUs</th>
                <th scope="col" className="num">Memory</th>
                <th scope="col">OS / arch</th>
                <th scope="col">Running</th>
                <th scope="col">Last seen</th>
              </tr>
            </thead>
            <tbody>
              {names.map((n) => <WorkerRow key={n} name={n} />)}
            </tbody>
          </table>
        </div>
      )}
      <CrowdAdmin />
    </>
  );
}
