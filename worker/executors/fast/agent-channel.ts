import { EventEmitter } from 'node:events';
import type { Socket } from 'node:net';
import { PassThrough, type Readable, type Writable } from 'node:stream';
import { newMarker } from './agent-protocol.js';
import { MarkerSplitter } from './marker-splitter.js';

/**
 * The worker's end of the in-container agent (see agent-protocol.ts): four sockets that
 * outlive the `podman run -d` that handed them to the container. One step at a time.
 */
export class AgentChannel {
  private readonly out: MarkerSplitter;
  private readonly err: MarkerSplitter;
  private lineBuffer = '';
  private current: { id: string; step: AgentStep } | null = null;
  private dead = false;
  private readonly readyPromise: Promise<void>;
  private onReady: (() => void) | undefined;
  private onDead: ((e: Error) => void) | undefined;

  constructor(private readonly cmd: Writable, private readonly ctl: Readable, private readonly outSocket: Readable, private readonly errSocket: Readable) {
    this.out = new MarkerSplitter(outSocket);
    this.err = new MarkerSplitter(errSocket);
    this.readyPromise = new Promise<void>((resolve, reject) => {
      this.onReady = resolve;
      this.onDead = reject;
    });
    this.readyPromise.catch(() => {});
    ctl.setEncoding('latin1');
    ctl.on('data', (text: string) => this.onControl(text));
    for (const e of ['end', 'close', 'error'] as const) ctl.on(e, () => this.gone());
    cmd.on('error', () => this.gone());
    for (const s of [cmd, ctl, outSocket, errSocket]) (s as Partial<Socket>).unref?.();
  }

  /** False once the agent is gone (killed, crashed, or the container stopped). */
  get alive(): boolean {
    return !this.dead;
  }

  /** Resolves when the agent said it runs; rejects if it is gone first or after `timeoutMs`. */
  ready(timeoutMs: number): Promise<void> {
    let timer: NodeJS.Timeout | undefined;
    const timeout = new Promise<never>((_, reject) => {
      timer = setTimeout(() => reject(new Error(`the container's agent did not start within ${timeoutMs} ms`)), timeoutMs);
    });
    return Promise.race([this.readyPromise, timeout]).finally(() => clearTimeout(timer));
  }

  /** Sends one step (shell code, see stepCode) to the agent; the returned stand-in behaves like its child process. */
  start(code: string): AgentStep {
    if (this.current) throw new Error('another step is still running in this sandbox');
    const marker = newMarker();
    const step = new AgentStep(() => this.abandon(step));
    this.current = { id: marker.id, step };
    this.out.begin(marker.bytes, step.stdout);
    this.err.begin(marker.bytes, step.stderr);
    step.once('close', () => { if (this.current?.step === step) this.current = null; });
    // Not synchronously: the caller attaches its listeners first.
    if (this.dead) setImmediate(() => step.exited(null));
    else this.cmd.write(`${marker.id} ${code}\n`);
    return step;
  }

  /** Drops the sockets (a running step's output ends here); the agent sees EOF and just sleeps. */
  close(): void {
    this.gone();
    for (const s of [this.cmd, this.ctl, this.outSocket, this.errSocket]) s.destroy();
  }

  private onControl(text: string): void {
    this.lineBuffer += text;
    let nl: number;
    while ((nl = this.lineBuffer.indexOf('\n')) >= 0) {
      const line = this.lineBuffer.slice(0, nl);
      this.lineBuffer = this.lineBuffer.slice(nl + 1);
      if (line === 'ready') this.onReady?.();
      const m = /^exit ([0-9a-f]{32}) (\d{1,3})$/.exec(line);
      const current = this.current;
      if (m && current && current.id === m[1]) current.step.exited(Number(m[2]));
    }
    // Only a misbehaving build writes long lines here; do not let it grow without bound.
    if (this.lineBuffer.length > 4096) this.lineBuffer = '';
  }

  private gone(): void {
    if (this.dead) return;
    this.dead = true;
    this.onDead?.(new Error('the container\'s agent exited before it was ready'));
    this.current?.step.exited(null);
  }

  /** The supervisor gave up on a step (it would not die): end it here, the agent is not trusted again. */
  private abandon(step: AgentStep): void {
    this.gone();
    step.stdout.destroy();
    step.stderr.destroy();
  }
}

/**
 * What supervise() sees of a step run by the agent: stdout/stderr streams that end at the
 * step's marker, 'exit' when its status arrives (or the agent is gone), then 'close'.
 */
export class AgentStep extends EventEmitter {
  readonly stdout = new PassThrough();
  readonly stderr = new PassThrough();
  private code: number | null | undefined;
  private streamsOpen = 2;
  private closed = false;

  constructor(private readonly onKill: () => void) {
    super();
    // Counted once everything written to them was read ('end'), or they were destroyed.
    for (const s of [this.stdout, this.stderr]) {
      let counted = false;
      const done = (): void => {
        if (counted) return;
        counted = true;
        this.streamsOpen--;
        this.maybeClose();
      };
      s.once('end', done);
      s.once('close', done);
    }
  }

  /** Only used by the supervisor as a last resort; the sandbox kills the container's processes itself. */
  kill(): boolean {
    this.onKill();
    this.exited(null);
    return true;
  }

  exited(code: number | null): void {
    if (this.code !== undefined) return;
    this.code = code;
    this.emit('exit', code, code === null ? 'SIGKILL' : null);
    this.maybeClose();
  }

  private maybeClose(): void {
    if (this.code === undefined || this.streamsOpen > 0 || this.closed) return;
    this.closed = true;
    this.emit('close', this.code, this.code === null ? 'SIGKILL' : null);
  }
}
