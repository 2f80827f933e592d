import type { BuildView, StepView, VerificationView } from '../../protocol/api.js';
import type { BuildRow, StepRow } from '../store/store.js';

/** A build as the REST API and the event stream show it. */
export function toBuildView(row: BuildRow, steps: readonly (StepView | StepRow)[], verification?: VerificationView | null): BuildView {
  return {
    ...(verification ? { verification } : {}),
    id: row.id, builder: row.builder, state: row.state, result: row.result, worker: row.worker,
    revision: row.revision, branch: row.branch, reason: row.reason, trigger: row.trigger, rebuildOf: row.rebuildOf,
    supersededBy: row.supersededBy, attempt: row.attempt, message: row.message,
    queuedAt: row.queuedAt, startedAt: row.startedAt, finishedAt: row.finishedAt,
    steps: steps.map((s) => ({ name: s.name, state: s.state, result: s.result, exitCode: s.exitCode })),
  };
}
