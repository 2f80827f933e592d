import { randomBytes } from 'node:crypto';
import type { CloudView } from '../../../protocol/api.js';
import type { BuilderDefinition } from '../../../protocol/builder-file.js';
import type { Ec2ProvisionerConfig } from '../../config/ec2-config.js';
import type { Coordinator } from '../../coordinator.js';
import { executorFor } from '../../matching.js';
import type { BuildRow, Store } from '../../store/store.js';
import { createOneTimeCredential } from '../../tokens.js';
import type { ProvisionContext } from '../provisioner.js';
import { CloudBudget } from './cloud-budget.js';
import type { CloudInstance } from './ec2-api.js';
import { Ec2Provisioner } from './ec2-provisioner.js';

export interface CloudPoolDeps {
  coordinator: () => Coordinator;
  store: Store;
  /** ws(s)://HOST:PORT/api/v1/worker as instances reach the master. */
  workerUrl: () => string;
  builder: (name: string) => BuilderDefinition | null;
  farmId: string;
  log: (line: string) => void;
  /** The master's certificate fingerprint for `--pin`, or null (no TLS). */
  pin: () => string | null;
}

interface Machine {
  worker: string;
  launchedAt: number;
  accountedAt: number;
  expiresAt: string;
  state: 'launching' | 'up' | 'terminating';
  connected: boolean;
  idleSince: number | null;
}

const secs = (ms: number) => `${Math.round(ms / 1000)}s`;

/**
 * One `ec2` provisioner's pool of cloud workers. Each second it looks at the queue and the
 * sessions: builds that waited `burstAfter` with no worker taking them (at once for
 * `cloud: preferred`) and no idle cloud worker to take them start instances, within `max`,
 * `budget.maxInstances` and the instance-hour caps; `min` instances are kept up. An instance
 * is terminated only when its worker is idle or gone: its one build done, idle past
 * `idleTimeout` (above `min`), gone after it connected, or never connected within
 * `bootGrace`. The reaper lists the farm's tagged instances every `reapEvery`; one with no
 * worker past its boot grace is marked (tag crowdbake:orphaned-at) and terminated one sweep later.
 */
export class CloudPool {
  private readonly provisioner: Ec2Provisioner;
  private readonly budget: CloudBudget;
  private readonly machines = new Map<string, Machine>();
  /** The warm pool: stopped on-demand instances, started again before any new one is launched; `ready` once the reaper's listing shows them stopped. */
  private readonly parked: { instance: CloudInstance; ready: boolean }[] = [];
  /** When the pool first saw each queued build waiting (left the queue: forgotten). */
  private readonly waitingSince = new Map<number, number>();
  private timers: NodeJS.Timeout[] = [];
  private lastError: string | null = null;
  private blockedWhy: string | null = null;
  private reaping = false;
  private closed = false;

  constructor(readonly config: Ec2ProvisionerConfig, private readonly deps: CloudPoolDeps) {
    this.provisioner = new Ec2Provisioner(config, deps.farmId, (w) => this.machines.get(w)?.expiresAt ?? '', deps.pin);
    this.budget = new CloudBudget(deps.store, config.name, config.budget);
  }

  get name(): string {
    return this.config.name;
  }

  async start(): Promise<void> {
    await this.budget.load();
    const tick = setInterval(() => this.tick(), Math.min(1000, Math.max(100, this.config.burstAfter / 4)));
    const reap = setInterval(() => void this.reap(), this.config.reapEvery);
    const flush = setInterval(() => void this.budget.flush(), 5000);
    this.timers = [tick, reap, flush];
    for (const t of this.timers) t.unref();
    void this.reap();
  }

  /** Whether this pool's workers could run the builder (its labels and executors; not `cloud: never`). */
  couldRun(def: BuilderDefinition): boolean {
    if (def.cloud === 'never') return false;
    return executorFor(def, { name: this.config.name, labels: new Set(this.config.labels), executors: this.config.executors, maxBuilds: 1, running: 0, accepting: true, trust: 'trusted' }) !== null;
  }

  private capacity(): number {
    return Math.min(this.config.max, this.config.budget.maxInstances ?? Infinity);
  }

  private tick(): void {
    if (this.closed) return;
    const now = Date.now();
    const coordinator = this.deps.coordinator();
    for (const m of this.machines.values()) {
      this.budget.add(now - m.accountedAt);
      m.accountedAt = now;
      if (m.state !== 'up') continue;
      const session = coordinator.session(m.worker);
      if (session) {
        m.connected = true;
        if (session.builds.size > 0) { m.idleSince = null; continue; }
        // Idle from here on: a cloud worker is never stopped while it runs a build.
        if (session.buildsLeft === 0) { void this.retire(m, 'its one build is done'); continue; }
        m.idleSince ??= now;
        if (now - m.idleSince >= this.config.idleTimeout && this.live() > this.config.min) void this.retire(m, `idle for ${secs(now - m.idleSince)}`);
      } else if (m.connected) {
        void this.retire(m, 'its worker left');
      } else if (now - m.launchedAt > this.config.bootGrace) {
        void this.terminate(m, `its worker did not connect within ${secs(this.config.bootGrace)} (bootGrace)`);
      }
    }
    const demand = this.demand(now);
    // A build that just became eligible may go to an idle cloud worker already up.
    if (demand > 0 && this.spare() > 0) coordinator.scheduleDispatch();
    const wanted = demand - this.spare();
    const toStart = Math.max(wanted, this.config.min - this.live());
    this.blockedWhy = null;
    for (let i = 0; i < toStart; i++) {
      const blocked = this.live() >= this.capacity()
        ? `all ${this.live()} cloud worker(s) of "${this.name}" are up (max ${this.capacity()})`
        : this.budget.blocked(this.live());
      if (blocked) { this.blockedWhy = blocked; break; }
      void this.launch(wanted > 0 ? 'queued builds waited for a volunteer' : `min ${this.config.min}`);
    }
  }

  /** Whether a queued build may go to this pool's workers now: its builder prefers the cloud, or it waited burstAfter. */
  eligible(row: BuildRow, def: BuilderDefinition): boolean {
    if (!this.couldRun(def)) return false;
    if (def.cloud === 'preferred') return true;
    const since = this.waitingSince.get(row.id);
    return since !== undefined && Date.now() - since >= this.config.burstAfter;
  }

  /** Queued builds this pool could run that may go to the cloud now. */
  private demand(now: number): number {
    const seen = new Set<number>();
    let n = 0;
    for (const row of this.deps.coordinator().queuedBuilds()) {
      seen.add(row.id);
      const since = this.waitingSince.get(row.id) ?? now;
      this.waitingSince.set(row.id, since);
      const def = this.deps.builder(row.builder);
      if (!def || !this.couldRun(def)) continue;
      if (def.cloud === 'preferred' || now - since >= this.config.burstAfter) n++;
    }
    for (const id of this.waitingSince.keys()) if (!seen.has(id)) this.waitingSince.delete(id);
    return n;
  }

  /** Instances that can still take a build: booting, or connected, idle and with their build unused. */
  private spare(): number {
    let n = 0;
    for (const m of this.machines.values()) {
      if (m.state === 'terminating') continue;
      const s = this.deps.coordinator().session(m.worker);
      if (!s ? !m.connected : s.builds.size === 0 && s.buildsLeft !== 0 && !s.draining) n++;
    }
    return n;
  }

  /** Instances that cost: launching, up, and those whose termination is still on its way. */
  private live(): number {
    return this.machines.size;
  }

  private async launch(why: string): Promise<void> {
    const worker = `${this.name}-${randomBytes(4).toString('hex')}`;
    const now = Date.now();
    const m: Machine = { worker, launchedAt: now, accountedAt: now, expiresAt: new Date(now + this.config.credentialTtl).toISOString(), state: 'launching', connected: false, idleSince: null };
    this.machines.set(worker, m);
    this.deps.log(`cloud ${this.name}: starting ${worker}: ${why}`);
    const w = this.parked.findIndex((p) => p.ready);
    const warm = w >= 0 ? this.parked.splice(w, 1)[0]!.instance : undefined;
    try {
      const token = await createOneTimeCredential(this.deps.store, worker, this.config.labels, this.config.credentialTtl);
      let resumed = false;
      if (warm) {
        try {
          await this.provisioner.resume(warm, this.context(worker, token));
          resumed = true;
        } catch (e) {
          // Left to the reaper (no worker: marked, then terminated); a new instance instead.
          this.deps.log(`cloud ${this.name}: cannot start ${warm.id} from the warm pool (${(e as Error).message}); launching a new one`);
        }
      }
      if (!resumed) await this.provisioner.start(this.context(worker, token));
      m.state = 'up';
      this.lastError = null;
    } catch (e) {
      this.lastError = (e as Error).message;
      this.deps.log(`cloud ${this.name}: cannot start ${worker}: ${this.lastError}`);
      this.machines.delete(worker);
      // A warm instance that would not start is left to the reaper (no worker: marked, then terminated).
      await this.deps.store.revokeToken(worker, new Date().toISOString()).catch(() => undefined);
    }
  }

  /** Its worker is idle or gone: stopped into the warm pool while it has room (on-demand instances only), else terminated. */
  private async retire(m: Machine, why: string): Promise<void> {
    const instance = this.provisioner.instanceOf(m.worker);
    if (m.state !== 'up' || !instance || instance.spot || this.parked.length >= this.config.warmPool) return this.terminate(m, why);
    m.state = 'terminating';
    this.deps.log(`cloud ${this.name}: stopping ${m.worker} into the warm pool: ${why}`);
    try {
      this.parked.push({ instance: await this.provisioner.park(m.worker), ready: false });
    } catch (e) {
      this.failedToLeave(m, 'stop', e);
    }
    await this.gone(m);
  }

  /** A machine's stop or termination failed: said, and forgotten by the provisioner (the reaper finds it by its tags). */
  private failedToLeave(m: Machine, what: 'stop' | 'terminate', e: unknown): void {
    this.lastError = `cannot ${what} ${m.worker}: ${(e as Error).message}`;
    this.deps.log(`cloud ${this.name}: ${this.lastError}`);
    this.provisioner.forget(m.worker);
  }

  /**
   * A machine has left the pool (stopped, terminated, or failed to): its time counted against
   * the budget, and its credential revoked — it can do nothing more either way, and revoked, a
   * session it still has is closed.
   */
  private async gone(m: Machine): Promise<void> {
    this.machines.delete(m.worker);
    this.budget.add(Date.now() - m.accountedAt);
    await this.deps.store.revokeToken(m.worker, new Date().toISOString()).catch(() => undefined);
  }

  private async terminate(m: Machine, why: string): Promise<void> {
    if (m.state === 'terminating') return;
    m.state = 'terminating';
    this.deps.log(`cloud ${this.name}: terminating ${m.worker}: ${why}`);
    try {
      await this.provisioner.stop(this.context(m.worker, ''));
    } catch (e) {
      // Left to the reaper, which finds it by its tags.
      this.failedToLeave(m, 'terminate', e);
    }
    await this.gone(m);
  }

  /**
   * Lists the farm's instances of this provisioner and terminates the leaked ones: no worker
   * connected, older than `bootGrace`, and found so on the previous sweep too (marked then).
   * An instance whose worker is connected is never touched.
   */
  async reap(): Promise<void> {
    if (this.reaping || this.closed) return;
    this.reaping = true;
    try {
      const now = Date.now();
      const instances = await this.provisioner.api.list();
      const mark: string[] = [];
      const reap: string[] = [];
      for (const i of instances) {
        if (i.worker && this.deps.coordinator().session(i.worker)) continue;
        const parked = this.parked.find((p) => p.instance.id === i.id);
        if (parked) { parked.ready = i.state === 'stopped'; continue; }
        const m = i.worker ? this.machines.get(i.worker) : undefined;
        if (m && m.state !== 'terminating' && now - m.launchedAt <= this.config.bootGrace) continue;
        if (!m && i.launchedAt !== null && now - i.launchedAt <= this.config.bootGrace) continue;
        if (i.orphanedAt === null) mark.push(i.id);
        else reap.push(i.id);
      }
      if (mark.length) {
        this.deps.log(`cloud ${this.name}: reaper: ${mark.join(', ')} run(s) with no worker; terminated on the next sweep unless a worker connects`);
        await this.provisioner.api.markOrphaned(mark, now);
      }
      if (reap.length) {
        this.deps.log(`cloud ${this.name}: reaper: terminating leaked instance(s) ${reap.join(', ')}`);
        await this.provisioner.api.terminate(reap);
        for (const i of instances) {
          if (!reap.includes(i.id) || !i.worker) continue;
          const m = this.machines.get(i.worker);
          if (m) { this.budget.add(now - m.accountedAt); this.machines.delete(i.worker); }
          this.provisioner.forget(i.worker);
        }
      }
    } catch (e) {
      this.lastError = `reaper: ${(e as Error).message}`;
      this.deps.log(`cloud ${this.name}: ${this.lastError}`);
    } finally {
      this.reaping = false;
    }
  }

  private context(worker: string, token: string): ProvisionContext {
    return { name: worker, masterUrl: this.deps.workerUrl(), token, labels: this.config.labels, log: (l) => this.deps.log(`cloud ${this.name}: ${worker}: ${l}`) };
  }

  /** Why a queued build of `def` waits, as far as this pool is concerned; null when it cannot run the builder. */
  waitReason(def: BuilderDefinition, row: BuildRow): string | null {
    if (!this.couldRun(def)) return null;
    const budget = this.budget.blocked(this.live());
    if (budget) return budget;
    const since = this.waitingSince.get(row.id) ?? Date.now();
    const left = this.config.burstAfter - (Date.now() - since);
    if (def.cloud !== 'preferred' && left > 0) return `waiting for a volunteer; a cloud worker of "${this.name}" starts for it in ${secs(left)} if none takes it (burstAfter ${secs(this.config.burstAfter)})`;
    if (this.blockedWhy) return this.blockedWhy;
    if (this.lastError) return `cloud workers of "${this.name}" cannot start: ${this.lastError}`;
    return `a cloud worker of "${this.name}" is starting for it`;
  }

  view(): CloudView {
    const b = this.budget.view();
    return {
      name: this.name, region: this.config.region, min: this.config.min, max: this.config.max,
      budget: {
        todayHours: round(b.todayHours), monthHours: round(b.monthHours),
        maxInstances: this.config.budget.maxInstances ?? null, hoursPerDay: this.config.budget.hoursPerDay ?? null, hoursPerMonth: this.config.budget.hoursPerMonth ?? null,
      },
      blocked: this.budget.blocked(this.live()) ?? this.blockedWhy,
      lastError: this.lastError,
      instances: [...this.parked.map(({ instance: p }) => ({
        worker: p.worker ?? '', id: p.id, type: p.type, spot: false, launchedAt: new Date(p.launchedAt ?? 0).toISOString(), state: 'stopped' as const,
      })), ...[...this.machines.values()].map((m) => {
        const i = this.provisioner.instanceOf(m.worker);
        const s = this.deps.coordinator().session(m.worker);
        return {
          worker: m.worker, id: i?.id ?? null, type: i?.type ?? null, spot: i?.spot ?? false, launchedAt: new Date(m.launchedAt).toISOString(),
          state: m.state === 'terminating' ? 'terminating' as const : !s ? (m.connected ? 'gone' as const : 'booting' as const) : s.builds.size ? 'busy' as const : 'idle' as const,
        };
      })],
    };
  }

  /** The master is shutting down: its cloud workers' one-time credentials cannot reconnect, so their instances are terminated. */
  async close(): Promise<void> {
    this.closed = true;
    for (const t of this.timers) clearInterval(t);
    const ids = [...this.machines.keys()].map((w) => this.provisioner.instanceOf(w)?.id).filter((id): id is string => !!id)
      .concat(this.parked.splice(0).map((p) => p.instance.id));
    for (const m of this.machines.values()) this.budget.add(Date.now() - m.accountedAt);
    this.machines.clear();
    await this.provisioner.api.terminate(ids).catch((e: Error) => this.deps.log(`cloud ${this.name}: cannot terminate ${ids.join(', ')} (the reaper will, at the next start): ${e.message}`));
    await this.budget.flush();
    this.provisioner.api.close();
  }
}

const round = (h: number) => Math.round(h * 1000) / 1000;
