/**
 * A worker's CPU time for a build is its own claim ([crowd] credit): nothing on the master
 * can measure it. What the master can bound is the most it could physically be — the wall
 * time the build held the worker (on the master's own clock, from assignment to the end)
 * times the cores the build was granted (the builder's `limits.cpus`, else the CPUs the
 * worker offers, at most MAX_CREDITED_CORES, the tighter of the two). A claim above that is cut down to it, and the
 * build's log says so; a claim can never make a volunteer's credit grow faster than the
 * cores they offered. It is still a claim below the bound: a worker may report more CPU than
 * it spent, up to wall × cores, and that is what SECURITY.md says.
 */

export interface CpuClaim {
  /** What is counted. */
  cpuMs: number;
  /** The bound, when the claim was above it; null when it was believed as is. */
  cappedAt: number | null;
}

/**
 * The most cores one build is credited with when its builder sets no `limits.cpus`: the
 * worker's offer is its own word (its hello), so a master-side ceiling bounds it. A claim of
 * 2^31 CPUs would otherwise make one short build worth centuries of credit.
 */
export const MAX_CREDITED_CORES = 64;

/** The cores a build was granted: the builder's limit and the worker's offer (at most MAX_CREDITED_CORES), the tighter; at least a fraction above 0. */
export function grantedCores(builderCpus: number | undefined, workerCpus: number): number {
  const offered = Number.isFinite(workerCpus) && workerCpus > 0 ? Math.min(workerCpus, MAX_CREDITED_CORES) : 1;
  return builderCpus !== undefined && builderCpus > 0 ? Math.min(builderCpus, offered) : offered;
}

/** The CPU ms counted for a claim of `claimedMs` over `wallMs` on `cores` cores. */
export function boundCpuClaim(claimedMs: number, wallMs: number, cores: number): CpuClaim {
  const bound = Math.floor(Math.max(0, wallMs) * cores);
  if (!Number.isFinite(claimedMs) || claimedMs < 0) return { cpuMs: 0, cappedAt: bound };
  return claimedMs > bound ? { cpuMs: bound, cappedAt: bound } : { cpuMs: Math.floor(claimedMs), cappedAt: null };
}
