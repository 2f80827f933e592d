import { existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import type { BuilderDefinition } from '../../protocol/builder-file.js';
import type { ProvisionerConfig } from '../config/master-config.js';
import type { CloudView } from '../../protocol/api.js';
import type { BuildRow } from '../store/store.js';
import type { CloudPool } from './ec2/cloud-pool.js';
import { farmId } from './farm-id.js';
import type { Coordinator } from '../coordinator.js';
import { executorFor } from '../matching.js';
import type { Store } from '../store/store.js';
import { createWorkerToken } from '../tokens.js';
import { createProvisioner } from './create-provisioner.js';
import type { LocalVmGuestBuilder } from './local-vm-provisioner.js';
import type { ProvisionContext, Provisioner } from './provisioner.js';

type State = 'stopped' | 'starting' | 'running' | 'stopping';

/** The provisioners that start one named worker each (the cloud ones are pools: CloudPool). */
export type LatentConfig = Exclude<ProvisionerConfig, { type: 'ec2' }>;

interface Latent {
  config: LatentConfig;
  provisioner: Provisioner;
  state: State;
  since: number;
  idleSince: number | null;
  lastError: string | null;
}

export interface LatentWorkerView {
  name: string;
  state: State;
  since: string;
  lastError: string | null;
}

export interface LatentDeps {
  coordinator: () => Coordinator; store: Store; masterUrl: () => string; dataDir: string; configDir: string; log: (l: string) => void;
  localVmGuest?: LocalVmGuestBuilder | null;
  /** [cloud] The farm's public URL (crowdbake.yml `url:`), which cloud instances dial. */
  publicUrl?: string | undefined;
  builder?: (name: string) => BuilderDefinition | null;
  /** [cloud] The TLS master's certificate fingerprint (`sha256:HEX`) cloud workers pin, or null. */
  pin?: () => string | null;
}

/**
 * Starts latent workers when queued work needs them and stops them when idle. Driven by the
 * coordinator's report of builds it could not place, and by a once-a-second look at each
 * latent worker's session.
 */
export class LatentWorkers {
  /**
   * Loads the cloud pool (and with it the AWS SDK's EC2 client, about 60 MiB) only when an
   * `ec2` provisioner is configured.
   */
  static async create(configs: ProvisionerConfig[], deps: LatentDeps): Promise<LatentWorkers> {
    const pool = configs.some((c) => c.type === 'ec2') ? (await import('./ec2/cloud-pool.js')).CloudPool : null;
    return new LatentWorkers(configs, deps, pool);
  }

  private readonly latent = new Map<string, Latent>();
  /** [cloud] The `ec2` provisioners: pools of cloud workers sized on the queue. */
  private readonly pools: CloudPool[] = [];
  private readonly timer: NodeJS.Timeout;
  private closed = false;

  constructor(
    configs: ProvisionerConfig[],
    private readonly deps: LatentDeps,
    Pool: typeof CloudPool | null = null,
  ) {
    const cloud = configs.filter((c) => c.type === 'ec2');
    const farm = cloud.length ? farmId(deps.dataDir) : '';
    if (cloud.length && !Pool) throw new Error('ec2 provisioners need LatentWorkers.create (it loads the cloud pool)');
    for (const config of cloud) {
      const base = () => (config.masterUrl ?? deps.publicUrl ?? deps.masterUrl()).replace(/^http/, 'ws').replace(/\/+$/, '');
      this.pools.push(new Pool!(config, {
        coordinator: deps.coordinator, store: deps.store, farmId: farm, log: deps.log, builder: deps.builder ?? (() => null), pin: deps.pin ?? (() => null),
        workerUrl: () => (base() === '' || base().endsWith('/api/v1/worker') ? base() : `${base()}/api/v1/worker`),
      }));
    }
    for (const config of configs) {
      if (config.type === 'ec2') continue;
      this.latent.set(config.name, {
        config, provisioner: createProvisioner(config, deps),
        state: 'stopped', since: Date.now(), idleSince: null, lastError: null,
      });
    }
    this.timer = setInterval(() => this.tick(), 1000);
    this.timer.unref();
  }

  get size(): number {
    return this.latent.size + this.pools.length;
  }

  /** [cloud] Starts the cloud pools (once the master listens: their instances need its URL). */
  async startPools(): Promise<void> {
    for (const p of this.pools) await p.start();
  }

  /** [cloud] The cloud pools, for GET /api/v1/cloud. */
  cloud(): CloudView[] {
    return this.pools.map((p) => p.view());
  }

  /** [cloud] Whether a queued build may go to a cloud worker now: volunteers first, for burstAfter (not for `cloud: preferred`). */
  mayUseCloud(row: BuildRow, def: BuilderDefinition): boolean {
    return this.pools.some((p) => p.eligible(row, def));
  }

  /** [cloud] Why a queued build waits as far as the cloud is concerned, or null (no pool can run it). */
  waitReason(def: BuilderDefinition, row: BuildRow): string | null {
    for (const p of this.pools) {
      const why = p.waitReason(def, row);
      if (why) return why;
    }
    return null;
  }

  list(): LatentWorkerView[] {
    return [...this.latent.values()].map((l) => ({ name: l.config.name, state: l.state, since: new Date(l.since).toISOString(), lastError: l.lastError }));
  }

  /** Whether some latent worker could run this builder (then it is not "unrunnable"). */
  couldRun(builder: BuilderDefinition): boolean {
    return [...this.latent.values()].some((l) => executorFor(builder, this.offer(l)) !== null) || this.pools.some((p) => p.couldRun(builder));
  }

  /** The coordinator could not place builds of these builders: start a latent worker for each, if one fits. */
  unplaced(builders: BuilderDefinition[]): void {
    if (this.closed) return;
    for (const b of builders) {
      const pick = [...this.latent.values()].find((l) => executorFor(b, this.offer(l)) !== null && (l.state === 'stopped' || l.state === 'starting' || l.state === 'running'));
      if (pick && pick.state === 'stopped') void this.start(pick, `queued work for builder ${b.name}`);
    }
  }

  private offer(l: Latent) {
    return { name: l.config.name, labels: new Set(l.config.labels), executors: l.config.executors, maxBuilds: 1, running: 0, accepting: true, trust: 'trusted' as const };
  }

  private async start(l: Latent, why: string): Promise<void> {
    this.set(l, 'starting');
    this.deps.log(`starting latent worker ${l.config.name}: ${why}`);
    try {
      await l.provisioner.start(await this.context(l));
      l.lastError = null;
    } catch (e) {
      l.lastError = (e as Error).message;
      this.deps.log(`latent worker ${l.config.name}: ${l.lastError}`);
      this.set(l, 'stopped');
    }
  }

  private async stop(l: Latent, why: string): Promise<void> {
    this.set(l, 'stopping');
    this.deps.log(`stopping latent worker ${l.config.name}: ${why}`);
    try {
      await l.provisioner.stop(await this.context(l));
    } catch (e) {
      l.lastError = (e as Error).message;
      this.deps.log(`latent worker ${l.config.name}: ${l.lastError}`);
    }
    this.set(l, 'stopped');
  }

  private set(l: Latent, state: State): void {
    l.state = state;
    l.since = Date.now();
    l.idleSince = null;
  }

  private tick(): void {
    if (this.closed) return;
    const now = Date.now();
    for (const l of this.latent.values()) {
      const session = this.deps.coordinator().session(l.config.name);
      if (l.state === 'starting' && session) this.set(l, 'running');
      if (l.state === 'starting' && !session && now - l.since > l.config.startTimeout) {
        l.lastError = `did not connect within ${Math.round(l.config.startTimeout / 1000)}s`;
        void this.stop(l, l.lastError);
        continue;
      }
      if (l.state !== 'running') continue;
      if (!session) {
        // Its connection is gone, but its machine may not be: a worker whose socket dropped
        // (a missed heartbeat, a network blip) dials again by itself. It is waited for as at
        // start, for startTimeout; one that does not come back is then stopped through the
        // provisioner, so a machine still up is not left running unwatched. A provisioner that
        // sees the machine itself end says so (ctx.exited), which marks it stopped at once.
        this.deps.log(`latent worker ${l.config.name} disconnected; waiting up to ${Math.round(l.config.startTimeout / 1000)}s for it to reconnect before stopping it`);
        this.set(l, 'starting');
        continue;
      }
      if (session.builds.size > 0) { l.idleSince = null; continue; }
      l.idleSince ??= now;
      if (now - l.idleSince >= l.config.idleTimeout) void this.stop(l, `idle for ${Math.round((now - l.idleSince) / 1000)}s`);
    }
  }

  /** The worker's token, made once and kept in DATA/provisioners/NAME.token (mode 0600). */
  private async context(l: Latent): Promise<ProvisionContext> {
    const dir = join(this.deps.dataDir, 'provisioners');
    const file = join(dir, `${l.config.name}.token`);
    let token: string;
    if (existsSync(file)) {
      token = readFileSync(file, 'utf8').trim();
    } else {
      if (await this.deps.store.getToken(l.config.name)) {
        throw new Error(`a token named "${l.config.name}" exists but ${file} is missing; pick another provisioner name`);
      }
      mkdirSync(dir, { recursive: true, mode: 0o700 });
      token = await createWorkerToken(this.deps.store, l.config.name, l.config.labels);
      writeFileSync(file, `${token}\n`, { mode: 0o600 });
    }
    const url = this.deps.masterUrl().replace(/^http/, 'ws');
    return {
      name: l.config.name, masterUrl: `${url}/api/v1/worker`, token, labels: l.config.labels,
      log: (line) => this.deps.log(`latent worker ${l.config.name}: ${line}`),
      exited: (why) => {
        if (l.state !== 'starting' && l.state !== 'running') return;
        l.lastError = why;
        this.deps.log(`latent worker ${l.config.name}: ${why}`);
        this.set(l, 'stopped');
      },
    };
  }

  /** Stops every latent worker that is up (the master is shutting down). */
  async close(): Promise<void> {
    this.closed = true;
    clearInterval(this.timer);
    await Promise.all(this.pools.map((p) => p.close()));
    await Promise.all([...this.latent.values()].filter((l) => l.state === 'running' || l.state === 'starting').map((l) => this.stop(l, 'the master is shutting down')));
  }
}
