import type { BuildView } from '../../../protocol/api.js';
import { buildStatus, STATUS_LABEL } from '../format';

/** A build's status as a word on its colour (the word carries the meaning, not the colour). */
export function BuildStatusBadge({ build }: { build: Pick<BuildView, 'state' | 'result'> }) {
  const status = buildStatus(build);
  return <span className={`badge status-${status}`}>{STATUS_LABEL[status]}</span>;
}
