import { EventEmitter } from 'node:events';
import { availableParallelism } from 'node:os';
import type { Preferences } from '../protocol/control-api.js';
import type { IdleSource } from './idle/idle-source.js';
import { decide, type Decision } from './policy.js';
import { cpuLoadPercent, onBattery } from './system-info.js';
import { hottestZoneC, THERMAL_ROOT } from './thermal.js';

const POLL_BUSY_MS = 250;
const POLL_WAIT_MS = 1000;
const BATTERY_EVERY_MS = 30_000;
const CPU_EVERY_MS = 5000;

/**
 * Applies the volunteer's rules continuously. Reads the idle source (and battery, CPU use),
 * decides with `policy.decide`, and emits 'change' with the new Decision whenever whether
 * builds may run — or why not — changes. Input seen by an event-capable idle source is acted
 * on at once, without waiting for a poll.
 */
export class Governor extends EventEmitter<{ change: [Decision] }> {
  private decision: Decision = { run: false, freeze: true, cpuCap: null, paused: false, reason: 'starting', recheckInMs: null };
  private idleMs = 0;
  private onBattery = false;
  private otherCpu: number | null = null;
  /** Since when other programs' CPU use has been above the volunteer's limit (null: it is not). */
  private otherCpuHighSince: number | null = null;
  private temperature: number | null = null;
  private readonly cpuCount = availableParallelism();
  private timer: NodeJS.Timeout | null = null;
  private slow: NodeJS.Timeout | null = null;
  private events = false;
  private closed = false;
  private evaluating: Promise<void> | null = null;

  constructor(
    private readonly idle: IdleSource,
    private prefs: () => Preferences,
    private readonly buildsRunning: () => boolean,
    /** Where thermal zones are read (tests point it at a directory of their own: there is no /sys/class/thermal in a VM). */
    private readonly thermalRoot = THERMAL_ROOT,
  ) {
    super();
  }

  get current(): Decision {
    return this.decision;
  }

  /** The hottest thermal zone at the last look, °C (null: none readable). */
  get temperatureC(): number | null {
    return this.temperature;
  }

  get lastIdleMs(): number {
    return this.idleMs;
  }

  async start(): Promise<void> {
    this.events = this.idle.onInput(() => this.input());
    await this.readSlow();
    await this.evaluate();
    this.slow = setInterval(() => void this.readSlow().catch(() => undefined), Math.min(BATTERY_EVERY_MS, CPU_EVERY_MS));
    this.slow.unref();
  }

  /** Preferences changed (pause, resume, limits): decide again now. */
  refresh(): Promise<void> {
    return this.evaluate();
  }

  private input(): void {
    if (this.closed) return;
    this.idleMs = 0;
    this.apply(decide(this.prefs(), this.observations()));
  }

  private evaluate(): Promise<void> {
    this.evaluating ??= (async () => {
      try {
        const r = await this.idle.read();
        this.idleMs = r.idleMs;
        if (r.onBattery !== undefined) this.onBattery = r.onBattery;
      } catch {
        // An idle source that stops answering counts as "in use": never build on a desk by mistake.
        this.idleMs = 0;
      }
      this.apply(decide(this.prefs(), this.observations()));
    })().finally(() => { this.evaluating = null; });
    return this.evaluating;
  }

  private observations() {
    const otherCpuHighForMs = this.otherCpuHighSince === null ? 0 : Date.now() - this.otherCpuHighSince;
    return {
      now: new Date(), idleMs: this.idleMs, onBattery: this.onBattery, otherCpuPercent: this.buildsRunning() ? null : this.otherCpu,
      otherCpuHighForMs, temperatureC: this.temperature, cpuCount: this.cpuCount,
    };
  }

  private apply(d: Decision): void {
    if (this.closed) return;
    const changed = d.run !== this.decision.run || d.freeze !== this.decision.freeze || d.cpuCap !== this.decision.cpuCap || d.reason.replace(/[\d.]+/g, '') !== this.decision.reason.replace(/[\d.]+/g, '');
    this.decision = d;
    if (changed) this.emit('change', d);
    this.schedule(d);
  }

  /**
   * Next look. While builds may run under `when: idle` and the source cannot report input
   * events, poll every 250 ms; while waiting for a threshold (idle time, snooze, schedule
   * edge), look exactly when it would be crossed (at most a minute ahead); else once a second.
   */
  private schedule(d: Decision): void {
    if (this.timer) clearTimeout(this.timer);
    const base = d.run && this.prefs().when === 'idle' && !this.events ? POLL_BUSY_MS : POLL_WAIT_MS;
    const wait = d.recheckInMs === null ? base
      : d.run ? Math.min(base, d.recheckInMs)
      : Math.max(10, Math.min(d.recheckInMs, 60_000));
    this.timer = setTimeout(() => void this.evaluate(), wait);
    this.timer.unref();
  }

  private async readSlow(): Promise<void> {
    const p = this.prefs();
    const [battery, load, temperature] = await Promise.all([
      onBattery().catch(() => null),
      p.maxOtherCpuPercent !== null && !this.buildsRunning() ? cpuLoadPercent().catch(() => null) : Promise.resolve(null),
      p.maxTemperatureC !== null ? hottestZoneC(this.thermalRoot) : Promise.resolve(null),
    ]);
    if (battery !== null) this.onBattery = battery;
    this.otherCpu = load;
    const high = load !== null && p.maxOtherCpuPercent !== null && load > p.maxOtherCpuPercent;
    this.otherCpuHighSince = high ? (this.otherCpuHighSince ?? Date.now()) : null;
    const hotter = temperature !== this.temperature;
    this.temperature = temperature;
    if (hotter && this.decision.reason !== 'starting') this.apply(decide(p, this.observations()));
  }

  close(): void {
    this.closed = true;
    if (this.timer) clearTimeout(this.timer);
    if (this.slow) clearInterval(this.slow);
    this.idle.close();
  }
}
