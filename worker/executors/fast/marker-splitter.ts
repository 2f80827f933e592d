import type { PassThrough, Readable } from 'node:stream';

const EMPTY = Buffer.alloc(0);

/**
 * Cuts one long-lived output stream (the agent's step stdout or stderr) into per-step
 * streams: bytes go to the current step's sink until that step's marker, which ends the
 * sink. Backpressure flows through: when the sink's buffer is full the source is paused, so
 * the step blocks on write. Between steps the source is paused; whatever a step's leftover
 * background processes write then is kept for the next step.
 */
export class MarkerSplitter {
  /** Bytes read but not routed yet: after a marker, or while no step was listening. */
  private pending: Buffer = EMPTY;
  /** The tail of the current step's output that could be the start of its marker. */
  private held: Buffer = EMPTY;
  private step: { marker: Buffer; sink: PassThrough } | null = null;
  private ended = false;

  constructor(private readonly source: Readable) {
    source.pause();
    source.on('data', (chunk: Buffer) => this.onData(chunk));
    source.on('end', () => this.onEnd());
    source.on('close', () => this.onEnd());
    source.on('error', () => this.onEnd());
  }

  /** True once the source has ended (the agent and every process holding the stream are gone). */
  get closed(): boolean {
    return this.ended;
  }

  /** Routes output to `sink` until `marker` (or the end of the source), then ends the sink. */
  begin(marker: Buffer, sink: PassThrough): void {
    if (this.step) throw new Error('a step is already reading this stream');
    this.step = { marker, sink };
    const pending = this.pending;
    this.pending = EMPTY;
    if (pending.length > 0) this.route(pending);
    if (!this.step) return;
    if (this.ended) this.finish();
    else this.source.resume();
  }

  private onData(chunk: Buffer): void {
    if (!this.step) {
      this.pending = this.pending.length > 0 ? Buffer.concat([this.pending, chunk]) : chunk;
      this.source.pause();
      return;
    }
    this.route(chunk);
  }

  private route(chunk: Buffer): void {
    const step = this.step!;
    const buf = this.held.length > 0 ? Buffer.concat([this.held, chunk]) : chunk;
    this.held = EMPTY;
    const at = buf.indexOf(step.marker);
    if (at >= 0) {
      this.write(buf.subarray(0, at));
      this.pending = buf.subarray(at + step.marker.length);
      this.source.pause();
      this.finish();
      return;
    }
    const keep = partialMarkerSuffix(buf, step.marker);
    this.held = buf.subarray(buf.length - keep);
    this.write(buf.subarray(0, buf.length - keep));
  }

  private write(bytes: Buffer): void {
    const sink = this.step?.sink;
    if (!sink || bytes.length === 0 || sink.destroyed || sink.writableEnded) return;
    if (sink.write(bytes)) return;
    this.source.pause();
    const resume = (): void => {
      sink.off('drain', resume);
      sink.off('close', resume);
      if (this.step?.sink === sink && !this.ended) this.source.resume();
    };
    sink.on('drain', resume);
    sink.on('close', resume);
  }

  private finish(): void {
    const step = this.step;
    if (!step) return;
    this.step = null;
    if (!step.sink.destroyed) step.sink.end();
  }

  private onEnd(): void {
    if (this.ended) return;
    this.ended = true;
    if (!this.step) return;
    const rest = this.held;
    this.held = EMPTY;
    this.write(rest);
    this.finish();
  }
}

/** Length of the longest suffix of `buf` that is a proper prefix of `marker`. */
export function partialMarkerSuffix(buf: Buffer, marker: Buffer): number {
  const first = marker[0];
  for (let k = Math.min(buf.length, marker.length - 1); k > 0; k--) {
    const start = buf.length - k;
    if (buf[start] !== first) continue;
    if (buf.subarray(start).equals(marker.subarray(0, k))) return k;
  }
  return 0;
}
