import { GRID_CELLS } from '../store/actions';
import { href } from '../router';
import { useBuilderNames, useBuildersLoaded, useDashboard, useQueueIds } from '../store/hooks';
import { BuildCells } from './build-cells';
import { PageTitle } from './page-title';

function QueueCount({ builder }: { builder: string }) {
  const queued = useQueueIds(builder).length;
  return queued === 0 ? <span className="muted">0</span> : <a href={href.builds(builder)}>{queued}</a>;
}

function RunningCount({ builder }: { builder: string }) {
  const n = useDashboard((s) => {
    let c = 0;
    for (const id of s.buildIds) {
      const b = s.builds[id]!;
      if (b.builder === builder && (b.state === 'running' || b.state === 'frozen')) c++;
    }
    return c;
  });
  return <>{n}</>;
}

/** Every builder on one line: queued, running, and its recent builds as cells (newest left). */
export function GridPage() {
  const names = useBuilderNames();
  const loaded = useBuildersLoaded();
  return (
    <>
      <PageTitle>Grid</PageTitle>
      <p className="lede">Recent builds of every builder, newest on the left. A cell opens its build.</p>
      {!loaded && <p className="muted">Loading builders…</p>}
      {loaded && names.length === 0 && <p className="muted">This master has no builders yet.</p>}
      {names.length > 0 && (
        <div className="table-wrap">
          <table className="table grid-table">
            <caption className="sr-only">Recent builds per builder</caption>
            <thead>
              <tr>
                <th scope="col">Builder</th>
                <th scope="col" className="num">Queued</th>
                <th scope="col" className="num">Running</th>
                <th scope="col">Last {GRID_CELLS} builds</th>
              </tr>
            </thead>
            <tbody>
              {names.map((n) => (
                <tr key={n}>
                  <th scope="row"><a href={href.builds(n)}>{n}</a></th>
                  <td className="num"><QueueCount builder={n} /></td>
                  <td className="num"><RunningCount builder={n} /></td>
                  <td className="grid-cells"><BuildCells builder={n} limit={GRID_CELLS} /></td>
                </tr>
              ))}
            </tbody>
          </table>
        </div>
      )}
    </>
  );
}
