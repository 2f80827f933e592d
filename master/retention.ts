import { readdirSync, rmSync, statSync } from 'node:fs';
import { join } from 'node:path';

export interface RetentionPolicy {
  /** Delete logs of builds that ended longer ago than this (ms); null keeps them. */
  logsMs: number | null;
  /** Delete artifacts stored longer ago than this (ms); null keeps them. */
  artifactsMs: number | null;
}

/**
 * Deletes old logs and artifacts by file age. Only finished builds' files qualify: a running
 * build's log is a plain `.log` file (compressed `.log.gz` only once the build ended), and its
 * artifacts are younger than any sensible retention. Returns what it removed.
 */
export function sweep(dataDir: string, policy: RetentionPolicy, now = Date.now()): { logs: number; artifacts: number } {
  const removed = { logs: 0, artifacts: 0 };
  if (policy.logsMs !== null) {
    const dir = join(dataDir, 'logs');
    for (const name of safeList(dir)) {
      if (!name.endsWith('.log.gz')) continue;
      const p = join(dir, name);
      if (now - statSync(p).mtimeMs > policy.logsMs) { rmSync(p, { force: true }); removed.logs++; }
    }
  }
  if (policy.artifactsMs !== null) {
    const dir = join(dataDir, 'artifacts');
    for (const name of safeList(dir)) {
      const p = join(dir, name);
      if (now - statSync(p).mtimeMs > policy.artifactsMs) { rmSync(p, { recursive: true, force: true }); removed.artifacts++; }
    }
  }
  return removed;
}

function safeList(dir: string): string[] {
  try { return readdirSync(dir); } catch { return []; }
}

/** Runs `sweep` at start and then every `everyMs`; returns a stop function. */
export function scheduleRetention(dataDir: string, policy: RetentionPolicy, log: (l: string) => void, everyMs = 3_600_000): () => void {
  if (policy.logsMs === null && policy.artifactsMs === null) return () => undefined;
  const run = () => {
    try {
      const r = sweep(dataDir, policy);
      if (r.logs || r.artifacts) log(`retention: removed ${r.logs} log(s) and the artifacts of ${r.artifacts} build(s)`);
    } catch (e) {
      log(`retention sweep failed: ${(e as Error).message}`);
    }
  };
  run();
  const timer = setInterval(run, everyMs);
  timer.unref();
  return () => clearInterval(timer);
}

/**
 * Several masters: removes the farm's log rows of builds that finished longer ago than
 * `logsMs`, at start and then every `everyMs` (run by the master holding the retention lease).
 */
export function scheduleSharedRetention(logsMs: number | null, logs: { removeFinishedBefore(cutoff: string): Promise<number> } | null, log: (l: string) => void, everyMs = 3_600_000): () => void {
  if (logsMs === null || !logs) return () => undefined;
  const run = () => {
    logs.removeFinishedBefore(new Date(Date.now() - logsMs).toISOString()).then((n) => {
      if (n) log(`retention: removed the logs of ${n} build(s) from the farm's store`);
    }, (e: Error) => log(`retention sweep of the farm's logs failed: ${e.message}`));
  };
  run();
  const timer = setInterval(run, everyMs);
  timer.unref();
  return () => clearInterval(timer);
}
