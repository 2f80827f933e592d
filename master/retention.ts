import { readdirSync, rmSync, statSync } from 'node:fs';
import { join, relative } from 'node:path';
import type { Store } from './store/store.js';
import { log } from './log.js';

export interface RetentionPolicy {
  /** Delete logs of builds that ended longer ago than this (ms); null keeps them. */
  logsMs: number | null;
  /** Delete artifacts stored longer ago than this (ms); null keeps them. */
  artifactsMs: number | null;
}

/** The local log store's part of retention (log-store.ts): logs of builds that ended before a time. */
export interface EndedLogs {
  removeEndedBefore(cutoff: number): number;
  hasRows(buildId: number): boolean;
  /** Whether a build's file is open (being appended to) or being compressed now. */
  busy(buildId: number): boolean;
}

/**
 * Deletes old logs and artifacts. Logs: with `logs`, those of builds that ended before the
 * policy's cutoff (their rows and files, log-store.ts); then, by file age, the compressed
 * `.log.gz` files (a build's file is compressed only once it ended). A plain `.log` file may
 * belong to a build still running, so only `logs` removes one, by its build's end (or
 * pruneOldPlainLogs, by the store's word that the build finished). Artifacts:
 * by age; they are younger than any sensible retention while their build runs. Returns what it
 * removed.
 */
export function sweep(dataDir: string, policy: RetentionPolicy, now = Date.now(), logs?: EndedLogs): { logs: number; artifacts: number } {
  const removed = { logs: 0, artifacts: 0 };
  if (policy.logsMs !== null) {
    // A failure here (the log database on a full disk) must not keep the files below from going.
    if (logs) {
      try {
        removed.logs += logs.removeEndedBefore(now - policy.logsMs);
      } catch (e) {
        log.warn(`retention: cannot remove the logs of ended builds from the log database: ${(e as Error).message}`);
      }
    }
    const dir = join(dataDir, 'logs');
    for (const name of safeList(dir)) {
      if (!name.endsWith('.log.gz')) continue;
      // A build whose head is still rows goes with them (removeEndedBefore), never half.
      if (logs?.hasRows(Number(name.slice(0, -'.log.gz'.length)))) continue;
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

/**
 * Removes the artifact files of finished builds that no artifact row names: what an attempt
 * uploaded before it was requeued or refused (the store drops those rows; listArtifacts
 * names only the accepted attempt's). Only finished builds qualify: no upload is open on
 * them, so no file can be between its rename and its row. Returns how many files went.
 */
export async function pruneUnlistedArtifacts(dataDir: string, store: Pick<Store, 'getBuild' | 'listArtifacts'>): Promise<number> {
  const root = join(dataDir, 'artifacts');
  let removed = 0;
  for (const dir of safeList(root)) {
    if (!/^[1-9][0-9]*$/.test(dir)) continue;
    const row = await store.getBuild(Number(dir));
    if (row?.state !== 'finished') continue;
    const keep = new Set((await store.listArtifacts(row.id)).map((a) => a.name));
    for (const file of filesBelow(join(root, dir))) {
      if (keep.has(relative(join(root, dir), file))) continue;
      rmSync(file, { force: true });
      removed++;
    }
  }
  return removed;
}

function filesBelow(dir: string): string[] {
  const out: string[] = [];
  for (const e of (() => { try { return readdirSync(dir, { withFileTypes: true }); } catch { return []; } })()) {
    const p = join(dir, e.name);
    if (e.isDirectory()) out.push(...filesBelow(p));
    else out.push(p);
  }
  return out;
}

/** How long after its one connection a spent one-time credential is kept (its hello may still be registering its session). */
export const SPENT_CREDENTIAL_GRACE_MS = 10 * 60_000;

/**
 * [cloud] Deletes one-time credentials that can never be used again: expired unused, or used
 * more than `SPENT_CREDENTIAL_GRACE_MS` ago by a worker no longer connected (the hub closes a
 * session whose token row is gone, so a connected one keeps its row). Regular tokens are
 * never touched. Returns how many went.
 */
export async function removeSpentCredentials(store: Pick<Store, 'listTokens' | 'deleteOneTimeTokens'>, connected: (name: string) => boolean, now = Date.now()): Promise<number> {
  const at = new Date(now).toISOString();
  const usedBefore = new Date(now - SPENT_CREDENTIAL_GRACE_MS).toISOString();
  const spent = (await store.listTokens()).filter((t) => t.oneTime && (t.usedAt
    ? t.usedAt < usedBefore && !connected(t.name)
    : t.expiresAt !== undefined && t.expiresAt !== null && t.expiresAt <= at));
  return store.deleteOneTimeTokens(spent.map((t) => t.name));
}

/** What the store part of retention needs: the store, and whether a worker is connected now; and the local log store, if logs are kept here. */
export interface RetentionStore {
  store: Store;
  connected: (name: string) => boolean;
  logs?: EndedLogs;
}

/**
 * Removes plain `.log` files older than `cutoff` whose build the store has finished (or does not
 * know): what no build end names in the log database, such as the short logs a master before
 * the log rows (ecb8029) kept plain and never compressed. The store's state, not the file,
 * says the build is over, so a running build's quiet log is never taken. Returns how many went.
 */
export async function pruneOldPlainLogs(dataDir: string, store: Pick<Store, 'getBuild'>, logs: EndedLogs, cutoff: number): Promise<number> {
  const dir = join(dataDir, 'logs');
  let removed = 0;
  for (const name of safeList(dir)) {
    const m = /^([1-9][0-9]*)\.log$/.exec(name);
    if (!m) continue;
    const id = Number(m[1]);
    const file = join(dir, name);
    const at = statSync(file, { throwIfNoEntry: false })?.mtimeMs;
    if (at === undefined || at >= cutoff || logs.hasRows(id) || logs.busy(id)) continue;
    const row = await store.getBuild(id);
    if (row && row.state !== 'finished') continue;
    // Looked at again after the await: a build that started to log meanwhile keeps its file.
    if (logs.busy(id)) continue;
    rmSync(file, { force: true });
    removed++;
  }
  return removed;
}

/** Runs `sweep` (and, with a store, the artifact prune and the spent credentials) at start and then every `everyMs`; returns a stop function. */
export function scheduleRetention(dataDir: string, policy: RetentionPolicy, log: (l: string) => void, everyMs = 3_600_000, withStore?: RetentionStore): () => void {
  if (policy.logsMs === null && policy.artifactsMs === null && !withStore) return () => undefined;
  let running = false;
  const run = async () => {
    if (running) return;
    running = true;
    try {
      const r = sweep(dataDir, policy, Date.now(), withStore?.logs);
      if (r.logs || r.artifacts) log(`retention: removed ${r.logs} log(s) and the artifacts of ${r.artifacts} build(s)`);
      if (withStore?.logs && policy.logsMs !== null) {
        const plain = await pruneOldPlainLogs(dataDir, withStore.store, withStore.logs, Date.now() - policy.logsMs);
        if (plain) log(`retention: removed ${plain} plain log file(s) of finished builds that no log end names (kept before the log database)`);
      }
      if (withStore) {
        const files = await pruneUnlistedArtifacts(dataDir, withStore.store);
        const credentials = await removeSpentCredentials(withStore.store, withStore.connected);
        if (files || credentials) log(`retention: removed ${files} artifact file(s) of requeued or refused attempts and ${credentials} spent one-time credential(s)`);
      }
    } catch (e) {
      log(`retention sweep failed: ${(e as Error).message}`);
    } finally {
      running = false;
    }
  };
  void run();
  const timer = setInterval(() => void run(), everyMs);
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

/** `artifacts.s3`: removes the bucket's artifacts stored longer ago than `artifactsMs` (one master at a time: the retention lease). */
export function scheduleObjectRetention(keepMs: number | null, objects: { removeOlderThan(cutoffMs: number): Promise<number>; where: string; what: string } | null | undefined, log: (l: string) => void, everyMs = 3_600_000): () => void {
  if (keepMs === null || !objects) return () => undefined;
  const run = () => {
    objects.removeOlderThan(Date.now() - keepMs).then((n) => {
      if (n) log(`retention: removed ${n} ${objects.what}(s) from ${objects.where}`);
    }, (e: Error) => log(`retention sweep of ${objects.where} failed: ${e.message}`));
  };
  run();
  const timer = setInterval(run, everyMs);
  timer.unref();
  return () => clearInterval(timer);
}

/** How long after its end a build's log is left to its own master's archive before the sweep puts it. */
export const LEFTOVER_AFTER_MS = 10 * 60_000;

/**
 * Finished builds' logs still held outside the object store (a put that failed its tries, a
 * master stopped mid-put): put now and then every `everyMs`, by the retention lease's holder.
 */
export function scheduleLeftoverArchive(archive: { archiveLeftovers(isDue: (buildId: number) => Promise<boolean>): Promise<number> },
  store: { getBuild(id: number): Promise<{ state: string; finishedAt: string | null } | null> }, log: (l: string) => void,
  everyMs = 600_000, afterMs = LEFTOVER_AFTER_MS): () => void {
  const isDue = async (id: number) => {
    const b = await store.getBuild(id);
    return !!b && b.state === 'finished' && b.finishedAt !== null && Date.parse(b.finishedAt) <= Date.now() - afterMs;
  };
  const run = () => {
    archive.archiveLeftovers(isDue).then((n) => {
      if (n) log(`archived ${n} finished build log(s) left outside the object store`);
    }, (e: Error) => log(`archiving left-over logs failed: ${e.message}`));
  };
  run();
  const timer = setInterval(run, everyMs);
  timer.unref();
  return () => clearInterval(timer);
}
