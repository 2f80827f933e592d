import { chmodSync, copyFileSync, existsSync, mkdirSync, mkdtempSync, readFileSync, renameSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { DiffoscopeReportSchema, type DiffoscopeReport } from '../../protocol/diffoscope-report.js';
import { formatSize } from '../../protocol/units.js';
import type { ArtifactStore } from '../artifact-store.js';
import type { Store } from '../store/store.js';
import type { Verification } from '../verification.js';
import { classifyDiff } from './diff-causes.js';
import { diffoscopeAvailable, runDiffoscope, sandboxAvailable, type RunLimits } from './diffoscope-run.js';

export interface DiagnosisOptions extends RunLimits {
  /** Artifacts larger than this are not compared. */
  maxInputBytes: number;
  command: string;
}

export const DEFAULT_DIAGNOSIS: DiagnosisOptions = {
  timeoutMs: 5 * 60_000, maxReportBytes: 2 * 1024 * 1024, memoryBytes: 4 * 1024 ** 3, maxInputBytes: 512 * 1024 ** 2, command: 'diffoscope',
};

const empty = (group: number | null, state: DiffoscopeReport['state'], message: string): DiffoscopeReport => ({
  group, state, message, artifact: null, builds: [], workers: [], sha256: [], causes: [], report: '', truncated: false, sandbox: '', startedAt: null, finishedAt: null,
});

/**
 * When replicas disagree ([provenance]): the master runs diffoscope on one pair of differing
 * artifacts in the background, one comparison at a time, within a time, memory and report
 * limit (diffoscope-run.ts), and keeps the report with its likely causes in
 * DATA/diffoscope/<group>.json. Nothing waits on it: the verdict is already stored.
 */
export class Diagnosis {
  private readonly dir: string;
  private queue: Promise<void> = Promise.resolve();
  private closed = false;
  private running: AbortController | null = null;

  constructor(
    private readonly store: Store,
    private readonly artifacts: ArtifactStore,
    private readonly verification: Verification,
    dataDir: string,
    private readonly options: DiagnosisOptions = DEFAULT_DIAGNOSIS,
    private readonly log: (line: string) => void = () => undefined,
  ) {
    this.dir = join(dataDir, 'diffoscope');
    mkdirSync(this.dir, { recursive: true });
  }

  /** A group was decided: if two of its successful replicas made different bytes, compare a pair. */
  groupDecided(memberIds: number[]): void {
    if (this.closed) return;
    this.queue = this.queue.then(() => (this.closed ? undefined : this.diagnose(memberIds))).catch((e: Error) => this.log(`diffoscope: ${e.message}`));
  }

  /**
   * Shutdown: comparisons still queued are dropped (replicas can be made to disagree at will,
   * so the queue could be long) and the running one is stopped; its report says so.
   */
  async close(): Promise<void> {
    this.closed = true;
    this.running?.abort();
    await this.queue;
  }

  /** Resolves when the comparisons queued so far are done (tests, shutdown). */
  settled(): Promise<void> {
    return this.queue;
  }

  async report(buildId: number): Promise<DiffoscopeReport> {
    const view = await this.verification.viewOf(buildId);
    if (!view) return empty(null, 'none', `build ${buildId} is not replicated: there is nothing to compare`);
    const file = this.file(view.group);
    if (!existsSync(file)) {
      if (view.verdict === 'pending') return empty(view.group, 'none', 'the replicas have not all finished yet');
      return empty(view.group, 'none', 'the replicas made the same bytes (or too few succeeded): nothing to diagnose');
    }
    return DiffoscopeReportSchema.parse(JSON.parse(readFileSync(file, 'utf8')));
  }

  private async diagnose(memberIds: number[]): Promise<void> {
    const replicas = [];
    for (const id of memberIds) {
      const row = await this.store.getBuild(id);
      if (row?.result === 'success') replicas.push({ id, worker: row.worker ?? '', artifacts: await this.store.listArtifacts(id) });
    }
    // The first artifact name two successful replicas made with different bytes.
    let pair: { name: string; a: (typeof replicas)[0]; b: (typeof replicas)[0]; sa: string; sb: string } | null = null;
    for (const a of replicas) {
      for (const b of replicas) {
        if (pair || a.id >= b.id) continue;
        for (const x of a.artifacts) {
          const y = b.artifacts.find((z) => z.name === x.name);
          if (y && y.sha256 !== x.sha256) { pair = { name: x.name, a, b, sa: x.sha256, sb: y.sha256 }; break; }
        }
      }
    }
    if (!pair) return;
    const group = Math.min(...memberIds);
    const base = { ...empty(group, 'running', 'diffoscope is comparing the pair'), artifact: pair.name, builds: [pair.a.id, pair.b.id], workers: [pair.a.worker, pair.b.worker], sha256: [pair.sa, pair.sb] };
    const save = (r: DiffoscopeReport) => { writeFileSync(`${this.file(group)}.tmp`, JSON.stringify(r)); renameSync(`${this.file(group)}.tmp`, this.file(group)); };
    const o = this.options;
    if (!diffoscopeAvailable(o.command)) {
      save({ ...base, state: 'unavailable', message: 'diffoscope is not installed on the master (Debian: apt-get install diffoscope-minimal), so the replicas\' artifacts were not compared' });
      return;
    }
    if (!sandboxAvailable()) {
      save({ ...base, state: 'unavailable', message: 'bwrap is not installed on the master (Debian: apt-get install bubblewrap): diffoscope does not run unconfined on bytes workers sent, so the replicas\' artifacts were not compared' });
      return;
    }
    // With a bucket, a replica received by another master is fetched to this disk first.
    const pa = await this.artifacts.localPath(pair.a.id, pair.name).catch(() => null) ?? this.artifacts.path(pair.a.id, pair.name);
    const pb = await this.artifacts.localPath(pair.b.id, pair.name).catch(() => null) ?? this.artifacts.path(pair.b.id, pair.name);
    if (!existsSync(pa) || !existsSync(pb)) { save({ ...base, state: 'failed', message: 'one of the two artifacts is no longer on the master' }); return; }
    const big = Math.max(statSync(pa).size, statSync(pb).size);
    if (big > o.maxInputBytes) { save({ ...base, state: 'skipped', message: `the artifacts are too large to compare here (${formatSize(big)}; the limit is ${formatSize(o.maxInputBytes)})` }); return; }
    const startedAt = new Date().toISOString();
    save({ ...base, startedAt });
    const work = mkdtempSync(join(tmpdir(), 'crowdbake-diffoscope-'));
    try {
      // Copies under the same name, in a/ and b/: the report names neither the master's paths nor the build ids.
      chmodSync(work, 0o755);
      for (const [d, p] of [['a', pa], ['b', pb]] as const) { mkdirSync(join(work, d), { mode: 0o755 }); copyFileSync(p, join(work, d, pair.name)); chmodSync(join(work, d, pair.name), 0o644); }
      this.running = new AbortController();
      const r = await runDiffoscope(work, `a/${pair.name}`, `b/${pair.name}`, o, o.command, this.running.signal);
      this.running = null;
      const causes = classifyDiff(r.report);
      const message = r.problem ?? (r.truncated ? `the report was cut at ${formatSize(o.maxReportBytes)}` : causes.length ? `likely causes: ${causes.map((c) => c.cause).join(', ')}` : 'diffoscope found differences of no usual kind; read the report');
      save({ ...base, state: r.problem && !r.report ? 'failed' : 'done', message, causes, report: r.report, truncated: r.truncated, sandbox: r.sandbox, startedAt, finishedAt: new Date().toISOString() });
    } finally {
      rmSync(work, { recursive: true, force: true });
    }
  }

  private file(group: number): string {
    return join(this.dir, `${group}.json`);
  }
}
