import type { IncomingMessage, ServerResponse } from 'node:http';
import { join } from 'node:path';
import type { BuilderDefinition } from '../../protocol/builder-file.js';
import { branchMatcher } from './branch-glob.js';
import { handleHookRequest } from './hook-endpoint.js';
import { lsRemoteHeads, type Heads, type LsRemoteOptions } from './ls-remote.js';
import { redactUrls, repoKey } from './repo-url.js';
import { SourcesFile, type SeenRecord } from './sources-file.js';
import { loadWebhookSecret } from './webhook-secret.js';
import type { PushEvent } from './webhook-payload.js';
import type { ReplayGuard } from './webhook-dedupe.js';
import { logLine } from '../log.js';

export interface ChangeSourcesOptions {
  dataDir: string;
  /** Several masters: webhook replay protection in the farm's store, so a retry reaching another master is still a retry. */
  webhookDedupe?: ReplayGuard;
  /** The builders as they are now (the registry); `refresh()` is called when they change. */
  builders: { list(): { name: string; definition: BuilderDefinition | null }[] };
  /** Queues one build; resolves once its row is committed. */
  requestBuild(builder: string, opts: { revision: string; reason: string; branch: string }): Promise<{ id: number }>;
  /** Called when a builder's source state changes (an error appears or clears, a new head is seen). */
  onStatusChange?: () => void;
  /** Default: `CROWDBAKE_WEBHOOK_SECRET`, else `DATA/webhook.secret`. */
  webhookSecret?: string;
  lsRemote?: (url: string, entries: readonly string[], opts: LsRemoteOptions) => Promise<Heads>;
  pollTimeoutMs?: number;
  log?: (line: string) => void;
}

/** A builder's source as `GET /api/v1/builders` shows it, next to `git` and `branch`. */
export interface SourceStatus {
  branches: string[];
  pollMs: number | null;
  lastPolledAt: string | null;
  /** The head of `branch` as last seen (null before the first poll or push). */
  lastSha: string | null;
  /** Every watched branch's last seen head. */
  heads: Record<string, string>;
  lastPushAt: string | null;
  /** Why the last poll of the repository, or the last build request, failed; null when fine. */
  error: string | null;
}

export interface QueuedBuild { builder: string; id: number; revision: string; branch: string }
export interface PushResult { queued: QueuedBuild[]; skipped?: { builder: string; reason: string }[] }

interface Watch {
  builder: string;
  git: string;
  repo: string;
  branch: string;
  entries: string[];
  matches: (branch: string) => boolean;
  pollMs: number | null;
}

/** One repository polled for all builders that watch it: one `git ls-remote` in flight at a time. */
interface Poller {
  repo: string;
  url: string;
  intervalMs: number;
  timer: NodeJS.Timeout | null;
  running: boolean;
  closed: boolean;
  lastPolledAt: string | null;
  error: string | null;
}

interface Wanted { watch: Watch; branch: string; sha: string; reason: string }

/**
 * Change sources: polls each watched repository with `git ls-remote` at its builders'
 * interval, takes push webhooks, and queues one build per new head.
 *
 * - First sight of a builder's source (or a change of its `branches:`) records the heads of
 *   the watched branches without building anything; after that, a changed head — a new
 *   commit, a force-push, also back to an older commit — or a new matching branch queues one
 *   build of exactly that head. Several commits pushed between two polls make one build of the
 *   newest head; a webhook push makes one build of its `after`.
 * - The last seen sha per (builder, repository, branch) lives in `DATA/sources.json`, written
 *   atomically after the build is queued: a restart neither rebuilds nor misses a push.
 */
export class ChangeSources {
  private readonly file: SourcesFile;
  private readonly log: (line: string) => void;
  private readonly secret: string;
  private readonly abort = new AbortController();
  private watches: Watch[] = [];
  private readonly pollers = new Map<string, Poller>();
  /** Bumped by every push per repository, so a poll that started before it cannot undo it. */
  private readonly pushEpoch = new Map<string, number>();
  private readonly buildErrors = new Map<string, string>();
  private readonly lastPushAt = new Map<string, string>();
  private closed = false;
  /** False while another master polls (several masters: the `change-sources` lease, master/farm/singleton.ts). */
  private polling = true;

  constructor(private readonly opts: ChangeSourcesOptions) {
    this.log = opts.log ?? logLine;
    this.file = new SourcesFile(join(opts.dataDir, 'sources.json'), this.log);
    this.secret = opts.webhookSecret ?? loadWebhookSecret(opts.dataDir);
  }

  /** Loads the last seen heads and starts polling. */
  start(): void {
    this.file.load();
    this.refresh();
  }

  /** Re-reads the builders: starts, retimes and stops repository pollers to match. */
  refresh(): void {
    if (this.closed) return;
    this.watches = this.opts.builders.list().flatMap(({ name, definition }) => {
      const src = definition?.source;
      if (!src) return [];
      const entries = src.branches ?? [src.branch];
      return [{ builder: name, git: src.git, repo: repoKey(src.git), branch: src.branch, entries, matches: branchMatcher(entries), pollMs: src.pollMs }];
    });
    const wanted = new Map<string, { url: string; intervalMs: number }>();
    for (const w of this.watches) {
      if (w.pollMs === null || !this.polling) continue;
      const cur = wanted.get(w.repo);
      if (!cur || w.pollMs < cur.intervalMs) wanted.set(w.repo, { url: cur?.url ?? w.git, intervalMs: w.pollMs });
    }
    for (const [repo, p] of this.pollers) {
      if (wanted.has(repo)) continue;
      p.closed = true;
      if (p.timer) clearTimeout(p.timer);
      this.pollers.delete(repo);
    }
    for (const [repo, { url, intervalMs }] of wanted) {
      const p = this.pollers.get(repo);
      if (!p) {
        const poller: Poller = { repo, url, intervalMs, timer: null, running: false, closed: false, lastPolledAt: null, error: null };
        this.pollers.set(repo, poller);
        this.schedule(poller, Math.random() * Math.min(intervalMs, 5000));
      } else if (p.intervalMs !== intervalMs || p.url !== url) {
        Object.assign(p, { url, intervalMs });
        if (!p.running) this.schedule(p, jitter(intervalMs));
      }
    }
  }

  /** Starts or stops polling repositories (webhooks are taken either way). */
  setPolling(on: boolean): void {
    if (this.polling === on) return;
    this.polling = on;
    this.refresh();
  }

  /** The source state of one builder, or null when it has no source. */
  status(builder: string): SourceStatus | null {
    const w = this.watches.find((x) => x.builder === builder);
    if (!w) return null;
    const rec = this.file.get(builder, w.repo);
    const p = w.pollMs === null ? undefined : this.pollers.get(w.repo);
    const heads = Object.fromEntries([...(rec?.heads ?? [])].filter(([b]) => w.matches(b)).sort(([a], [b]) => (a < b ? -1 : 1)));
    return {
      branches: w.entries, pollMs: w.pollMs, lastPolledAt: p?.lastPolledAt ?? null,
      lastSha: rec?.heads.get(w.branch) ?? null, heads, lastPushAt: this.lastPushAt.get(builder) ?? null,
      error: p?.error ?? this.buildErrors.get(builder) ?? null,
    };
  }

  /** `POST /api/v1/hooks/{provider}`: answers the request itself. */
  handleHook(provider: string, req: IncomingMessage, res: ServerResponse): Promise<void> {
    return handleHookRequest(provider, req, res, {
      secret: this.secret, dataDir: this.opts.dataDir, ...(this.opts.webhookDedupe ? { dedupe: this.opts.webhookDedupe } : {}), apply: (push, via) => this.applyPush(push, via),
    });
  }

  /** A verified push to a branch: one build per builder watching that repository and branch, unless it has seen that head. */
  async applyPush(push: PushEvent & { after: string }, via: string): Promise<PushResult> {
    const branch = push.ref.slice('refs/heads/'.length);
    const keys = new Set(push.repoUrls.map(repoKey));
    const result: PushResult = { queued: [] };
    const wanted: Wanted[] = [];
    for (const w of this.watches) {
      if (!keys.has(w.repo) || !w.matches(branch)) continue;
      this.pushEpoch.set(w.repo, (this.pushEpoch.get(w.repo) ?? 0) + 1);
      this.lastPushAt.set(w.builder, new Date().toISOString());
      const rec = this.file.record(w.builder, w.repo);
      if (rec.heads.get(branch) === push.after) {
        (result.skipped ??= []).push({ builder: w.builder, reason: `already built or queued ${push.after} of ${branch}` });
        continue;
      }
      rec.heads.set(branch, push.after);
      wanted.push({ watch: w, branch, sha: push.after, reason: `push to ${branch} (${via} webhook)` });
    }
    result.queued = await this.queue(wanted);
    return result;
  }

  close(): void {
    this.closed = true;
    this.abort.abort();
    for (const p of this.pollers.values()) {
      p.closed = true;
      if (p.timer) clearTimeout(p.timer);
    }
    this.pollers.clear();
  }

  private schedule(p: Poller, delayMs: number): void {
    if (p.timer) clearTimeout(p.timer);
    p.timer = setTimeout(() => { p.timer = null; void this.poll(p); }, delayMs);
    p.timer.unref();
  }

  private async poll(p: Poller): Promise<void> {
    if (p.closed || p.running) return;
    p.running = true;
    const epoch = this.pushEpoch.get(p.repo) ?? 0;
    const watchers = this.watches.filter((w) => w.repo === p.repo && w.pollMs !== null);
    const entries = [...new Set(watchers.flatMap((w) => w.entries))];
    let heads: Heads | null = null;
    const before = p.error;
    try {
      heads = await (this.opts.lsRemote ?? lsRemoteHeads)(p.url, entries, { signal: this.abort.signal, timeoutMs: this.opts.pollTimeoutMs ?? 60_000 });
      p.error = null;
    } catch (e) {
      p.error = redactUrls((e as Error).message);
    }
    p.lastPolledAt = new Date().toISOString();
    p.running = false;
    if (p.closed) return;
    if (p.error !== before) {
      if (p.error) this.log(`source ${redactUrls(p.url)}: ${p.error}`);
      this.opts.onStatusChange?.();
    }
    try {
      // A push that arrived while git ran is newer than what git saw: skip this round.
      if (heads && epoch === (this.pushEpoch.get(p.repo) ?? 0)) await this.applyHeads(p.repo, heads);
    } catch (e) {
      this.log(`source ${redactUrls(p.url)}: ${(e as Error).message}`);
    }
    if (!p.closed) this.schedule(p, jitter(p.intervalMs));
  }

  /** Compares polled heads with what each polling builder of the repository has seen. */
  private async applyHeads(repo: string, heads: Heads): Promise<void> {
    const wanted: Wanted[] = [];
    let recorded = false;
    for (const w of this.watches) {
      if (w.repo !== repo || w.pollMs === null) continue;
      const rec = this.file.record(w.builder, repo);
      const baseline = rec.entries === null || rec.entries.join('\n') !== w.entries.join('\n');
      for (const [branch, sha] of [...heads].sort(([a], [b]) => (a < b ? -1 : 1))) {
        if (!w.matches(branch)) continue;
        const prev = rec.heads.get(branch);
        if (prev === sha) continue;
        rec.heads.set(branch, sha);
        if (prev === undefined && baseline) {
          rec.durable.set(branch, sha);
          recorded = true;
          continue;
        }
        wanted.push({ watch: w, branch, sha, reason: prev === undefined ? `new branch ${branch}` : `new commit on ${branch}` });
      }
      if (baseline) {
        rec.entries = w.entries;
        recorded = true;
      }
    }
    if (wanted.length) await this.queue(wanted);
    else if (recorded) {
      this.file.save();
      this.opts.onStatusChange?.();
    }
  }

  /** Requests the builds in order, then makes their heads durable; a failed request is retried at the next poll. */
  private async queue(wanted: Wanted[]): Promise<QueuedBuild[]> {
    const queued: QueuedBuild[] = [];
    let changed = false;
    for (const { watch: w, branch, sha, reason } of wanted) {
      const rec: SeenRecord = this.file.record(w.builder, w.repo);
      try {
        const row = await this.opts.requestBuild(w.builder, { revision: sha, reason, branch });
        rec.durable.set(branch, sha);
        queued.push({ builder: w.builder, id: row.id, revision: sha, branch });
        changed ||= this.buildErrors.delete(w.builder);
      } catch (e) {
        if (rec.heads.get(branch) === sha) {
          const old = rec.durable.get(branch);
          if (old === undefined) rec.heads.delete(branch);
          else rec.heads.set(branch, old);
        }
        this.buildErrors.set(w.builder, `could not queue a build of ${sha} (${branch}): ${(e as Error).message}`);
        this.log(`builder ${w.builder}: ${this.buildErrors.get(w.builder)}`);
        changed = true;
      }
    }
    this.file.save();
    if (queued.length || changed) this.opts.onStatusChange?.();
    return queued;
  }
}

/** ±10 %, so builders with the same interval do not poll in lockstep. */
function jitter(ms: number): number {
  return Math.round(ms * (0.9 + Math.random() * 0.2));
}
