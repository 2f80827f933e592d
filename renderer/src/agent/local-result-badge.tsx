import type { HistoryEntry } from './agent-api';

const LABEL = { success: 'Success', failure: 'Failure', error: 'Error', cancelled: 'Cancelled' } as const;

/** A local build's result as a word on its colour; "Running" until it has one. */
export function LocalResultBadge({ entry }: { entry: Pick<HistoryEntry, 'result' | 'finishedAt'> }) {
  if (entry.result === null) return <span className={`badge status-${entry.finishedAt ? 'error' : 'running'}`}>{entry.finishedAt ? 'Error' : 'Running'}</span>;
  return <span className={`badge status-${entry.result}`}>{LABEL[entry.result]}</span>;
}
