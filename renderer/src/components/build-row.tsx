import { buildDuration, formatTime, shortRevision } from '../format';
import { href } from '../router';
import { useBuild } from '../store/hooks';
import { BuildStatusBadge } from './build-status-badge';
import { RunningDuration } from './running-duration';

export function BuildRow({ id, rowIndex }: { id: number; rowIndex?: number }) {
  const b = useBuild(id);
  if (!b) return null;
  return (
    <tr aria-rowindex={rowIndex}>
      <td><a href={href.build(b.id)}>#{b.id}</a></td>
      <td>{b.builder}</td>
      <td><BuildStatusBadge build={b} /></td>
      <td>{b.worker ?? <span className="muted">—</span>}</td>
      <td>{b.revision ? <code title={b.revision}>{shortRevision(b.revision)}</code> : <span className="muted">—</span>}</td>
      <td><time dateTime={b.queuedAt}>{formatTime(b.queuedAt)}</time></td>
      <td>{b.startedAt ? <time dateTime={b.startedAt}>{formatTime(b.startedAt)}</time> : <span className="muted">—</span>}</td>
      <td className="num">{b.state === 'running' || b.state === 'frozen' ? <RunningDuration build={b} /> : buildDuration(b)}</td>
    </tr>
  );
}
