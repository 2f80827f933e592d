/**
 * The master's own clock on running builds: a build may hold a worker slot for its time
 * limit plus a grace, not counting the time its worker reports it frozen; frozen time has a
 * budget of its own. A worker that says nothing, or says "frozen" forever, still loses the
 * build when a budget runs out (`onExpire`), so no volunteer holds a build for as long as it
 * stays connected.
 */
export class BuildDeadlines {
  private readonly clocks = new Map<number, Clock>();

  constructor(private readonly onExpire: (buildId: number, why: string) => void, private readonly clock: () => number = Date.now) {}

  /** The build started running: `runMs` of running time, `frozenMs` of frozen time in all. */
  start(buildId: number, runMs: number, frozenMs: number): void {
    this.stop(buildId);
    const c: Clock = { runLeft: runMs, frozenLeft: frozenMs, runMs, frozenMs, frozen: false, since: this.clock(), timer: undefined };
    this.clocks.set(buildId, c);
    this.arm(buildId, c);
  }

  /** The worker reports the build frozen (true) or running again (false). */
  setFrozen(buildId: number, frozen: boolean): void {
    const c = this.clocks.get(buildId);
    if (!c || c.frozen === frozen) return;
    this.spend(c);
    c.frozen = frozen;
    this.arm(buildId, c);
  }

  stop(buildId: number): void {
    const c = this.clocks.get(buildId);
    if (!c) return;
    clearTimeout(c.timer);
    this.clocks.delete(buildId);
  }

  close(): void {
    for (const id of [...this.clocks.keys()]) this.stop(id);
  }

  private spend(c: Clock): void {
    const now = this.clock();
    const used = now - c.since;
    if (c.frozen) c.frozenLeft -= used;
    else c.runLeft -= used;
    c.since = now;
  }

  private arm(buildId: number, c: Clock): void {
    clearTimeout(c.timer);
    const left = Math.max(0, c.frozen ? c.frozenLeft : c.runLeft);
    // setTimeout takes at most 2^31-1 ms; a longer budget re-arms when that runs out.
    const wait = Math.min(left, 2 ** 31 - 1);
    c.timer = setTimeout(() => {
      this.spend(c);
      if ((c.frozen ? c.frozenLeft : c.runLeft) > 0) { this.arm(buildId, c); return; }
      this.clocks.delete(buildId);
      this.onExpire(buildId, c.frozen
        ? `frozen for longer than the master allows in all (${seconds(c.frozenMs)})`
        : `ran longer than the master allows (${seconds(c.runMs)}, its time limit plus the grace; frozen time not counted)`);
    }, wait);
    c.timer.unref();
  }
}

interface Clock {
  runLeft: number;
  frozenLeft: number;
  runMs: number;
  frozenMs: number;
  frozen: boolean;
  since: number;
  timer: NodeJS.Timeout | undefined;
}

const seconds = (ms: number): string => `${Math.round(ms / 1000)}s`;
