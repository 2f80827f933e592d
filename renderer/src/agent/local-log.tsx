import { LogPanel } from '../components/log-panel';
import { logUrl } from './agent-api';
import { useAgent } from './agent-store';

/** A local build's log (the one openLog() follows), live while it runs, searchable. */
export function LocalLog({ id }: { id: number }) {
  const log = useAgent((s) => s.log);
  const shown = log.id === id ? log : null;
  const running = shown?.entry ? shown.entry.finishedAt === null : true;
  let status: string;
  if (!shown || shown.status === 'loading') status = 'Loading the log…';
  else if (shown.status === 'error') status = `Could not load the log: ${shown.error ?? 'unknown error'}`;
  else status = running ? 'Streaming live' : 'Complete';
  return (
    <LogPanel
      id={`local-${id}-log`}
      text={shown?.text ?? ''}
      label={`Log of local build ${id}`}
      status={status}
      statusIsError={shown?.status === 'error'}
      live={running}
      truncated={shown?.truncated ? 'Only the end of a long log is shown here; the raw log has all of it.' : undefined}
      rawUrl={logUrl(id)}
      placeholder={shown?.status === 'ready' ? '(empty)' : ''}
    />
  );
}
