import { createHash } from 'node:crypto';
import { copyFileSync, createReadStream, mkdirSync, rmSync, statSync } from 'node:fs';
import { lexists, makeBuildDir, retireBuildDir, type BuildDir } from './build-dirs.js';
import { basename, dirname, join } from 'node:path';
import type { BuildSpec, Limits } from '../protocol/build-spec.js';
import { formatDuration, formatSize } from '../protocol/units.js';
import { LOG_FRAME_ROOM } from '../protocol/log-frame.js';
import { ARTIFACT_CHUNK_BYTES } from '../protocol/version.js';
import type { BuildResult, WorkerMessage } from '../protocol/worker-messages.js';
import { checkout } from './checkout.js';
import { CpuTally } from './cpu-time.js';
import type { DiskLimit, Executor, Sandbox, StepOutcome } from './executors/executor.js';
import type { FreezeGate } from './freeze-gate.js';
import { findFiles } from './glob.js';
import { logText, utf16Units, Utf8Stream, type LogText, SPLIT_MIN } from './log-text.js';
import { attemptStatement, signStatement } from './provenance-signer.js';
import { compileForBuilds } from './v8-tiers.js';
import type { KeyObject } from 'node:crypto';

/** Sends one message to the master; resolves when the socket can take more (backpressure). */
export type Send = (message: WorkerMessage) => Promise<void>;

export interface RunContext {
  buildId: number;
  attempt: number;
  spec: BuildSpec;
  executor: Executor;
  /** Parent of the per-build workdirs. */
  workRoot: string;
  /** The build's directory in workRoot; `b<buildId>-a<attempt>` when unset (a local re-run has its own, local-reruns.ts). */
  dirName?: string;
  /** The volunteer's caps; the tighter of these and the builder's limits applies. */
  volunteerLimits: Limits;
  send: Send;
  /** Aborted on cancel or when the master connection is lost. */
  signal: AbortSignal;
  /** Freezes the build while the volunteer is at the desk. */
  gate: FreezeGate;
  /** Sends the build's next log text to the master (a log frame); a promise only while backed up. */
  sendLog: (text: LogText) => void | Promise<void>;
  /** Gets a copy of the log (UTF-8), for the worker's local history. */
  localLog?: (bytes: Buffer) => void;
  /** The master the build came from; a source on loopback is fetched only when it is on loopback too. */
  masterUrl?: string;
  /** [provenance] This worker's name and enrolled key: a successful attempt's finish carries its signed statement. */
  provenance?: { worker: string; key: KeyObject; agentVersion: string };
}

const DEFAULT_STEP_TIMEOUT_MS = 2 * 3_600_000;
/** How much output one log frame carries at most (a frame is refused by the master above MAX_FRAME_BYTES). */
export const LOG_FLUSH_BYTES = 64 * 1024;
const LOG_FLUSH_MS = 10;

/** The tighter of two limit sets, field by field. */
export function tighterLimits(a: Limits, b: Limits): Limits {
  const out: Limits = {};
  for (const k of ['timeMs', 'cpus', 'memoryBytes', 'diskBytes', 'pids'] as const) {
    const v = [a[k], b[k]].filter((x): x is number => x !== undefined);
    if (v.length) out[k] = Math.min(...v);
  }
  return out;
}

/**
 * Runs one assigned build: checkout, environment, steps in a sandbox, artifacts, cleanup.
 * Translates between the executor (which knows nothing of the protocol) and the master.
 * Always ends with one `state finished` message, unless the connection is gone.
 */
export async function runBuild(ctx: RunContext): Promise<BuildResult> {
  // Every build (a master's, a local rerun) runs with compiled code; the agent idled on the interpreter only (v8-tiers.ts).
  compileForBuilds();
  const { buildId, attempt, spec, send } = ctx;
  const log = new LogBuffer((text) => {
    ctx.localLog?.(text.bytes);
    return ctx.sendLog(text);
  });
  const workdir = join(ctx.workRoot, buildDirName(ctx));
  const installDir = `${workdir}-install`;
  // The checkout is BUILD/src, so that its parent (where dpkg-buildpackage writes) is the build's own directory.
  const src = join(workdir, 'src');
  const limits = tighterLimits(spec.limits, ctx.volunteerLimits);
  const run: StageRun = { ctx, log, limits, deadline: limits.timeMs !== undefined ? Date.now() + limits.timeMs : Infinity, cpu: new CpuTally() };
  let outcome: { result: BuildResult; message: string | null } = { result: 'success', message: null };
  // Each workdir is its own filesystem of at most limits.disk, when the executor can do that.
  const disks = new Map<string, DiskLimit>();
  // An empty pair of directories may pass to the next build on the host executor (build-dirs.ts).
  const reuse = ctx.executor.keepsBuildDirs === true;
  /** The workdir as made, when it may be kept (this executor keepsBuildDirs, no disk limit): retireBuildDir keeps only that directory. */
  let keepable: BuildDir | undefined;
  /** Makes `dir`, and `dir/src` when `withSrc` (inside the disk limit, when there is one). */
  const makeWorkdir = async (dir: string, withSrc: boolean): Promise<void> => {
    const limited = limits.diskBytes !== undefined && ctx.executor.limitDisk !== undefined;
    const keep = reuse && !limited;
    const made = makeBuildDir(ctx.workRoot, dir, keep, withSrc && !limited);
    if (dir === workdir && keep) keepable = made;
    if (!limited) return;
    const disk = await ctx.executor.limitDisk!(dir, limits.diskBytes!);
    if (disk) disks.set(dir, disk);
    else log.line(`*** the disk limit is not enforced by the ${ctx.executor.kind} executor here`);
    if (withSrc && !made.hasSrc) mkdirSync(join(dir, 'src'));
  };
  const releaseDisk = async (dir: string): Promise<void> => {
    await disks.get(dir)?.release().catch((e: Error) => log.line(`*** cleanup failed: ${e.message}`));
    disks.delete(dir);
  };
  await send({ type: 'accepted', buildId, attempt });
  const startedOn = new Date().toISOString();
  let revision: string | null = spec.revision;
  const uploaded: { name: string; size: number; sha256: string }[] = [];
  let imageId: string | null = null;
  try {
    // Asked first: rmSync of a missing directory throws and catches an error inside (a stack trace a build).
    for (const dir of [workdir, installDir]) if (lexists(dir)) rmSync(dir, { recursive: true, force: true });
    log.line(`builder ${spec.builder}, executor ${ctx.executor.kind}, limits ${describeLimits(limits)}`);
    await makeWorkdir(workdir, true);
    await ctx.gate.waitThawed(ctx.signal);
    if (spec.source) {
      // On the host, with nothing of the volunteer's: see worker/checkout.ts.
      revision = await checkout(spec, src, log, ctx.signal, { masterUrl: ctx.masterUrl });
      await send({ type: 'revision', buildId, attempt, revision });
    }
    outcome = await runStage(run, { workdir: src, buildDir: workdir, environment: spec.environment, steps: spec.steps, firstIndex: 0, prefix: '', network: spec.network });
    if (ctx.provenance && ctx.executor.environmentId) imageId = await ctx.executor.environmentId(spec.environment).catch(() => null);
    if (outcome.result === 'success') {
      const files = await uploadArtifacts(ctx, src, log, uploaded);
      if (spec.testInstall) {
        // A fresh environment holding nothing but the artifacts: no sources, no build tools.
        await makeWorkdir(installDir, false);
        mkdirSync(join(installDir, 'artifacts'), { recursive: true });
        for (const f of files) copyFileSync(f, join(installDir, 'artifacts', basename(f)));
        await releaseDisk(workdir);
        rmSync(workdir, { recursive: true, force: true });
        log.line(`--- test-install: ${files.length} artifact(s) in /work/artifacts of a fresh ${spec.testInstall.environment.base} environment`);
        outcome = await runStage(run, {
          workdir: installDir, environment: spec.testInstall.environment, steps: spec.testInstall.steps,
          firstIndex: spec.steps.length, prefix: 'test-install: ', network: false, writableRoot: true,
        });
      }
    }
  } catch (e) {
    if (e instanceof Cancelled || ctx.signal.aborted) {
      outcome = { result: 'cancelled', message: 'cancelled' };
    } else {
      const full = (e as NodeJS.ErrnoException).code === 'ENOSPC';
      outcome = { result: 'error', message: full ? `this worker's disk is full: ${(e as Error).message}` : (e as Error).message };
      log.line(`*** ${outcome.message}`);
    }
  } finally {
    for (const dir of [workdir, installDir]) await releaseDisk(dir);
  }
  // [provenance] Signed here, on the worker, over what it hashed and uploaded itself.
  const provenance = ctx.provenance && outcome.result === 'success'
    ? signStatement(attemptStatement({
      buildId, attempt, worker: ctx.provenance.worker, spec, executor: ctx.executor.kind, limits, revision, artifacts: uploaded,
      startedOn, finishedOn: new Date().toISOString(), agentVersion: ctx.provenance.agentVersion, imageId,
    }), ctx.provenance.key)
    : undefined;
  if (provenance) log.line(`provenance: statement of ${uploaded.length} artifact(s) signed with this worker's key ${provenance.signatures[0]!.keyid}`);
  log.line(`build ${outcome.result}`);
  await log.flush().catch(() => undefined);
  await send({ type: 'state', buildId, attempt, state: 'finished', ...outcome, ...run.cpu.field(), ...(provenance ? { provenance } : {}) }).catch(() => undefined);
  // Removed after the master heard the end, so that it can assign the next build meanwhile. A
  // worker stopped in between leaves the directory behind; the agent empties its work root
  // when it starts.
  for (const dir of [workdir, installDir]) {
    try {
      retireBuildDir(ctx.workRoot, dir, dir === workdir ? keepable : undefined);
    } catch (e) {
      ctx.localLog?.(Buffer.from(`*** could not remove ${dir}: ${(e as Error).message}\n`));
    }
  }
  return outcome.result;
}

/** The build's directory in the work root, and the stem of its sandboxes' names. */
function buildDirName(ctx: RunContext): string {
  return ctx.dirName ?? `b${ctx.buildId}-a${ctx.attempt}`;
}

interface StageRun {
  ctx: RunContext;
  log: LogBuffer;
  limits: Limits;
  /** Wall-clock end of the build's time limit (Infinity when none). */
  deadline: number;
  /** CPU time of the build's sandboxes, for the master's credit (cpu-time.ts). */
  cpu: CpuTally;
}

interface Stage {
  workdir: string;
  environment: BuildSpec['environment'];
  steps: BuildSpec['steps'];
  /** Index of this stage's first step among all the build's steps. */
  firstIndex: number;
  prefix: string;
  network: boolean;
  /** Test-install steps install the artifacts (dpkg -i) into the environment's root. */
  writableRoot?: boolean;
  /** The build's own directory holding `workdir` (see SandboxRequest.buildDir). */
  buildDir?: string;
}

/** Prepares the environment, opens a sandbox, runs the steps in order, and always destroys the sandbox. */
async function runStage(run: StageRun, stage: Stage): Promise<{ result: BuildResult; message: string | null }> {
  const { ctx, log } = run;
  const { buildId, attempt, spec, send } = ctx;
  await ctx.gate.waitThawed(ctx.signal);
  // Setup lines run sandboxed like steps, under the build's limits and freeze gate (setup-layer.ts).
  await ctx.executor.prepare(stage.environment, (line) => log.line(line), { limits: run.limits, gate: ctx.gate, signal: ctx.signal });
  await ctx.gate.waitThawed(ctx.signal);
  const sandbox: Sandbox = await ctx.executor.open({
    // Named after the build's directory (a local re-run's own, local-reruns.ts), so that two runs of one build never share a container name.
    id: `${buildDirName(ctx)}-${stage.firstIndex}-${process.pid}`, workdir: stage.workdir,
    environment: stage.environment, limits: run.limits, network: stage.network, writableRoot: stage.writableRoot, buildDir: stage.buildDir,
  });
  try {
    await ctx.gate.attach(sandbox);
    for (const [i, step] of stage.steps.entries()) {
      if (ctx.signal.aborted) throw new Cancelled();
      const index = stage.firstIndex + i;
      const name = `${stage.prefix}${step.name}`;
      await send({ type: 'step', buildId, attempt, index, name, state: 'running', result: null, exitCode: null });
      log.line(`--- step ${name}: ${describeCommand(step.run)}`);
      const started = Date.now();
      const timeoutMs = Math.max(1, Math.min(step.timeoutMs ?? DEFAULT_STEP_TIMEOUT_MS, run.deadline - Date.now()));
      const outcome = await sandbox.run({
        run: step.run, timeoutMs, signal: ctx.signal,
        env: {
          CROWDBAKE: '1', CROWDBAKE_BUILD_ID: String(buildId), CROWDBAKE_BUILDER: spec.builder,
          CROWDBAKE_REVISION: spec.revision ?? '', CROWDBAKE_STEP: name, ...step.env,
        },
        onOutput: (chunk, stream) => log.write(chunk, stream),
      });
      await log.flush();
      const result = stepResultOf(outcome);
      log.line(`--- step ${name} ${result} (exit ${outcome.exitCode ?? 'none'}, ${formatDuration(Date.now() - started)})${outcome.message ? `: ${outcome.message}` : ''}`);
      await send({ type: 'step', buildId, attempt, index, name, state: 'finished', result, exitCode: outcome.exitCode });
      if (result !== 'success') return { result, message: outcome.message ?? `step ${name} exited with ${outcome.exitCode}` };
    }
    return { result: 'success', message: null };
  } finally {
    ctx.gate.detach(sandbox);
    run.cpu.add(await sandbox.cpuMs?.().catch(() => null));
    await sandbox.destroy().catch((e: Error) => log.line(`*** cleanup failed: ${e.message}`));
  }
}

class Cancelled extends Error {}

/** The command for the step header: its first line, and how many more there are. */
function describeCommand(run: string | string[]): string {
  const text = typeof run === 'string' ? run : run.map((a) => (/[\s"'$]/.test(a) ? JSON.stringify(a) : a)).join(' ');
  const lines = text.trim().split('\n');
  return lines.length > 1 ? `${lines[0]} … (${lines.length - 1} more lines)` : lines[0]!;
}

function stepResultOf(o: StepOutcome): BuildResult {
  if (o.stopped === 'cancelled') return 'cancelled';
  if (o.stopped === 'error') return 'error';
  if (o.stopped || o.exitCode !== 0) return 'failure';
  return 'success';
}

function describeLimits(l: Limits): string {
  const parts = [
    l.timeMs !== undefined ? `time ${formatDuration(l.timeMs)}` : '',
    l.cpus !== undefined ? `cpus ${l.cpus}` : '',
    l.memoryBytes !== undefined ? `memory ${formatSize(l.memoryBytes)}` : '',
    l.diskBytes !== undefined ? `disk ${formatSize(l.diskBytes)}` : '',
    l.pids !== undefined ? `pids ${l.pids}` : '',
  ].filter(Boolean);
  return parts.length ? parts.join(', ') : 'none';
}

/** Uploads the files matching the builder's artifact patterns; returns their paths. */
async function uploadArtifacts(ctx: RunContext, workdir: string, log: LogBuffer, uploaded: { name: string; size: number; sha256: string }[]): Promise<string[]> {
  // Patterns are relative to the checkout; `../PATTERN` matches in its parent, the build's own
  // directory (dpkg-buildpackage's ../*.deb), never above it: `../../x` matches nothing, and
  // findFiles never follows a symlink. The sandbox is gone by now, so nothing can swap a file.
  const up = ctx.spec.artifacts.filter((p) => p.startsWith('../')).map((p) => p.slice(3));
  const here = ctx.spec.artifacts.filter((p) => !p.startsWith('../'));
  const files = [...new Set([...findFiles(workdir, here), ...findFiles(dirname(workdir), up)])].sort();
  if (ctx.spec.artifacts.length && files.length === 0) log.line(`no artifacts matched ${ctx.spec.artifacts.join(', ')}`);
  const names = new Set<string>();
  for (const file of files) {
    const name = basename(file);
    if (names.has(name)) throw new Error(`two artifacts are named ${name}; artifact file names must be unique`);
    names.add(name);
    const size = statSync(file).size;
    const sha256 = await hashFile(file);
    log.line(`artifact ${name} ${formatSize(size)} sha256 ${sha256}`);
    await log.flush();
    let offset = 0;
    const stream = createReadStream(file, { highWaterMark: ARTIFACT_CHUNK_BYTES });
    for await (const chunk of stream) {
      const buf = chunk as Buffer;
      await ctx.send({
        type: 'artifact', buildId: ctx.buildId, attempt: ctx.attempt, name, size, sha256, offset,
        data: buf.toString('base64'), last: offset + buf.length === size,
      });
      offset += buf.length;
    }
    if (size === 0) {
      await ctx.send({ type: 'artifact', buildId: ctx.buildId, attempt: ctx.attempt, name, size, sha256, offset: 0, data: '', last: true });
    }
    uploaded.push({ name, size, sha256 });
  }
  return files;
}

function hashFile(file: string): Promise<string> {
  return new Promise((ok, fail) => {
    const h = createHash('sha256');
    createReadStream(file).on('data', (c) => h.update(c)).on('end', () => ok(h.digest('hex'))).on('error', fail);
  });
}

/**
 * Coalesces build output into log frames of up to LOG_FLUSH_BYTES, flushed within 10 ms. Each
 * stream is cut at whole UTF-8 characters on its own (log-text.ts), so stdout and stderr never
 * interleave inside a character; valid output stays the bytes that were read. `write` returns a
 * promise only while the connection is backed up, which pauses the step's output pipe;
 * otherwise the output flows on without waiting a turn of the event loop per frame.
 */
export class LogBuffer {
  private parts: Buffer[] = [];
  private bytes = 0;
  private units = 0;
  private timer: NodeJS.Timeout | null = null;
  /** The sink's last unsettled answer (the connection is backed up), else null. */
  private pending: Promise<void> | null = null;
  private readonly streams = { stdout: new Utf8Stream(), stderr: new Utf8Stream() };

  constructor(private readonly sink: (text: LogText) => void | Promise<void>, private readonly flushBytes = LOG_FLUSH_BYTES) {}

  line(text: string): void {
    this.add(logText(`${text}\n`));
    this.schedule();
  }

  write(chunk: Buffer, stream: 'stdout' | 'stderr'): void | Promise<void> {
    const text = this.streams[stream].write(chunk);
    if (text) this.add(text);
    if (this.bytes < this.flushBytes) {
      this.schedule();
      return;
    }
    this.deliver();
    return this.pending ?? undefined;
  }

  private add(text: LogText): void {
    // Output read in a piece larger than a frame (not from a pipe, which gives 64 KiB at most): cut at whole characters.
    const pieces = text.bytes.length > this.flushBytes ? splitWhole(text, this.flushBytes) : [text];
    for (const piece of pieces) {
      if (pieces.length > 1) this.deliver();
      this.parts.push(piece.bytes);
      this.bytes += piece.bytes.length;
      this.units += piece.units;
    }
  }

  private schedule(): void {
    this.timer ??= setTimeout(() => void this.flush().catch(() => undefined), LOG_FLUSH_MS);
  }

  /** Hands what is buffered to the sink, after whatever the sink has not taken yet. */
  private deliver(): void {
    if (this.timer) { clearTimeout(this.timer); this.timer = null; }
    if (this.bytes === 0) return;
    // One piece of SPLIT_MIN or more (a loud step's output: each pipe read fills a frame) goes as
    // it was read: the link writes the frame's header beside it (master-link.ts writeSplitFrame).
    // Anything else is joined into one buffer, with room for the frame's header before the text
    // (no copy when it is sent).
    let data: LogText;
    if (this.parts.length === 1 && this.bytes >= SPLIT_MIN) data = { bytes: this.parts[0]!, units: this.units };
    else {
      const frame = Buffer.allocUnsafe(LOG_FRAME_ROOM + this.bytes);
      let at = LOG_FRAME_ROOM;
      for (const part of this.parts) at += part.copy(frame, at);
      data = { bytes: frame.subarray(LOG_FRAME_ROOM), units: this.units, room: LOG_FRAME_ROOM };
    }
    this.parts = [];
    this.bytes = 0;
    this.units = 0;
    const answer = this.pending ? this.pending.then(() => this.sink(data)) : this.sink(data);
    if (!answer) return;
    const p: Promise<void> = answer.finally(() => { if (this.pending === p) this.pending = null; });
    p.catch(() => undefined); // whoever awaits p sees the error; nobody has to
    this.pending = p;
  }

  /**
   * Sends everything; resolves once the sink took it all. Called when a step's output has all
   * been read (and at an artifact, at the end): a character cut short at the end of a stream goes
   * now, as U+FFFD (Utf8Stream.end).
   */
  async flush(): Promise<void> {
    for (const s of Object.values(this.streams)) {
      const rest = s.end();
      if (rest) this.add(rest);
    }
    this.deliver();
    await this.pending;
  }
}

/** Whole-character pieces of at most `max` bytes (max >= 4). */
function splitWhole(text: LogText, max: number): LogText[] {
  const out: LogText[] = [];
  let rest = text.bytes;
  while (rest.length > max) {
    let end = max;
    while (end > 0 && (rest[end]! & 0xc0) === 0x80) end--; // not inside a character
    const piece = rest.subarray(0, end);
    out.push({ bytes: piece, units: utf16Units(piece) });
    rest = rest.subarray(end);
  }
  out.push({ bytes: rest, units: out.length ? utf16Units(rest) : text.units });
  return out;
}
