import { formatBytes, formatRelative } from '../format';
import { useNow } from '../hooks/use-now';
import { href } from '../router';
import { useWorker, useWorkerActivity, useWorkerBuildIds } from '../store/hooks';
import { LabelList } from './label-list';

const ACTIVITY_LABEL = { idle: 'Idle', busy: 'Busy', frozen: 'Frozen', draining: 'Draining', offline: 'Offline' } as const;

export function WorkerRow({ name }: { name: string }) {
  const w = useWorker(name);
  const activity = useWorkerActivity(name);
  const builds = useWorkerBuildIds(name);
  const now = useNow();
  if (!w) return null;
  return (
    <tr>
      <th scope="row">{w.name}</th>
      <td>
        <span className={`badge worker-${activity}`}>{w.connected ? 'Connected' : 'Disconnected'}</span>
        {w.connected && <span className="muted"> · {ACTIVITY_LABEL[activity]}</span>}
        {w.connected && !w.accepting && w.reason && <div className="muted small" title="Why this worker takes no new builds now">Holding: {w.reason}</div>}
      </td>
      <td>{w.labels.length ? <LabelList labels={w.labels} /> : <span className="muted">none</span>}</td>
      <td>{w.executors.join(', ') || <span className="muted">—</span>}</td>
      <td className="num">{w.cpus ?? '—'}</td>
      <td className="num">{formatBytes(w.memory)}</td>
      <td>{w.os || w.arch ? `${w.os ?? '?'} / ${w.arch ?? '?'}` : <span className="muted">—</span>}</td>
      <td>
        {builds.length === 0
          ? <span className="muted">nothing</span>
          : (
            <ul className="inline-list">
              {builds.map((id) => <li key={id}><a href={href.build(id)}>#{id}</a></li>)}
            </ul>
          )}
      </td>
      <td>{w.connected ? 'now' : formatRelative(w.lastSeenAt, now)}</td>
    </tr>
  );
}
