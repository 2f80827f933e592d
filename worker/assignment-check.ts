import { baseProblem } from '../protocol/base-ref.js';
import type { BuildSpec, ExecutorKind, Limits } from '../protocol/build-spec.js';
import { formatSize } from '../protocol/units.js';

/** Why a build needs more than the volunteer allows (memory, disk), or null. */
export function exceedsVolunteer(needs: Limits, allowed: Limits): string | null {
  if (needs.memoryBytes !== undefined && allowed.memoryBytes !== undefined && needs.memoryBytes > allowed.memoryBytes) {
    return `it needs ${formatSize(needs.memoryBytes)} of memory; this volunteer allows ${formatSize(allowed.memoryBytes)}`;
  }
  if (needs.diskBytes !== undefined && allowed.diskBytes !== undefined && needs.diskBytes > allowed.diskBytes) {
    return `it needs ${formatSize(needs.diskBytes)} of disk; this volunteer allows ${formatSize(allowed.diskBytes)}`;
  }
  return null;
}

/** The executor an assignment asks for (`any`: the container). */
export function executorFor(spec: Pick<BuildSpec, 'executor'>): ExecutorKind {
  return spec.executor === 'any' ? 'container' : spec.executor;
}

/**
 * Why this agent refuses an assignment, before anything of it touches the host; null: it is
 * taken. The spec comes from a master (already parsed by the protocol's strict schema): the
 * executor must be one this agent has, the build not running here already, every base valid
 * by the shared grammar (protocol/base-ref.ts: no path, URL or option smuggled into a name
 * that executors later hand to podman, QEMU or the filesystem), and its limits within the
 * volunteer's. `volunteer: true` refusals name this worker and are logged; the others are a
 * master's routine mistakes, answered only.
 */
export function assignmentRefusal(spec: BuildSpec, here: { executors: { has(kind: ExecutorKind): boolean }; running: boolean; volunteerLimits: Limits }): { message: string; volunteer: boolean } | null {
  if (!here.executors.has(executorFor(spec))) return { message: `this worker has no ${spec.executor} executor`, volunteer: false };
  if (here.running) return { message: 'build already running here', volunteer: false };
  const badBase = [spec.environment.base, ...(spec.testInstall ? [spec.testInstall.environment.base] : [])].map(baseProblem).find((p) => p !== null);
  if (badBase) return { message: badBase, volunteer: true };
  const tooBig = exceedsVolunteer(spec.limits, here.volunteerLimits);
  if (tooBig) return { message: tooBig, volunteer: true };
  return null;
}
