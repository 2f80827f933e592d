import type { BuildView } from '../../../protocol/api.js';
import { logUrl } from '../api';
import { useSelection } from '../store/hooks';
import { LogPanel } from './log-panel';

/** The build log on the build page: loaded once, then followed live; searchable. */
export function LogView({ build }: { build: BuildView }) {
  const { log, logStatus, logError, logTruncated } = useSelection();
  const live = build.state === 'running' || build.state === 'frozen';
  let status: string;
  if (logStatus === 'error') status = `Could not load the log: ${logError ?? 'unknown error'}`;
  else if (logStatus === 'loading') status = 'Loading the log…';
  else if (live) status = 'Streaming live';
  else if (build.state === 'queued') status = 'Waiting for a worker';
  else status = 'Complete';
  return (
    <LogPanel
      id={`build-${build.id}-log`}
      text={log}
      label={`Log of build ${build.id}`}
      status={status}
      statusIsError={logStatus === 'error'}
      live={live}
      truncated={logTruncated ? 'Only the end of a long log is shown here; the raw log has all of it.' : undefined}
      rawUrl={logUrl(build.id)}
      placeholder={logStatus === 'ready' && build.state !== 'queued' ? '(empty)' : ''}
    />
  );
}
