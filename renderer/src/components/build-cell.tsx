import { buildStatus, formatTime, shortRevision, STATUS_LABEL } from '../format';
import { href } from '../router';
import { useBuild } from '../store/hooks';

/** One build in a builder's row: its number on its status colour; a link to the build. */
export function BuildCell({ id }: { id: number }) {
  const b = useBuild(id);
  if (!b) return null;
  const status = buildStatus(b);
  const when = formatTime(b.finishedAt ?? b.startedAt ?? b.queuedAt);
  return (
    <a
      className={`cell status-${status}`}
      href={href.build(id)}
      title={`#${id} · ${STATUS_LABEL[status]} · ${shortRevision(b.revision)} · ${when}`}
      aria-label={`Build ${id}: ${STATUS_LABEL[status]}`}
    >
      {id}
    </a>
  );
}
