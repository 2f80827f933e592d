import type { BuildView, StepView } from '../../../protocol/api.js';

const label = (s: StepView) => {
  if (s.state !== 'finished') return s.state === 'running' ? 'Running' : 'Pending';
  switch (s.result) {
    case 'success': return 'Success';
    case 'failure': return 'Failure';
    case 'cancelled': return 'Cancelled';
    default: return 'Error';
  }
};
const statusClass = (s: StepView) => (s.state === 'finished' ? `status-${s.result ?? 'error'}` : `status-${s.state === 'running' ? 'running' : 'pending'}`);

/** The build's steps with state/result and exit code. */
export function StepList({ build }: { build: BuildView }) {
  if (build.steps.length === 0) {
    return <p className="muted">{build.state === 'queued' ? 'The steps show once a worker starts the build.' : 'No steps reported.'}</p>;
  }
  return (
    <div className="table-wrap">
      <table className="table steps-table">
        <caption className="sr-only">Steps of build #{build.id}</caption>
        <thead>
          <tr>
            <th scope="col" className="num">#</th>
            <th scope="col">Step</th>
            <th scope="col">Status</th>
            <th scope="col" className="num">Exit code</th>
          </tr>
        </thead>
        <tbody>
          {build.steps.map((s, i) => (
            <tr key={i}>
              <td className="num">{i + 1}</td>
              <td>{s.name}</td>
              <td><span className={`badge ${statusClass(s)}`}>{label(s)}</span></td>
              <td className="num">{s.exitCode ?? <span className="muted">—</span>}</td>
            </tr>
          ))}
        </tbody>
      </table>
    </div>
  );
}
