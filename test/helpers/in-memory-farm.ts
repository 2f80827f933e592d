import { join } from 'node:path';
import { BuilderFileSchema, toBuilderDefinition, type BuilderDefinition } from '../../protocol/builder-file.js';
import type { Capabilities, MasterMessage } from '../../protocol/worker-messages.js';
import { ArtifactStore } from '../../master/artifact-store.js';
import { Coordinator } from '../../master/coordinator.js';
import { EventBus } from '../../master/events.js';
import { LogStore } from '../../master/log-store.js';
import { openStore } from '../../master/store/open-store.js';
import type { Store } from '../../master/store/store.js';
import { createWorkerToken } from '../../master/tokens.js';
import { WorkerHub } from '../../master/worker-hub.js';
import { MasterLink } from '../../worker/master-link.js';
import { cleanup, tempDir } from './cluster.js';
import { FEATURES_HEADER } from '../../protocol/worker-features.js';
import type { WorkerLogRange } from '../../master/log-store.js';
import { asWebSocket, linkedPair, type LinkedSocket } from './linked-sockets.js';

/**
 * A master's coordinator and worker hub (real, on a real SQLite store in a temp dir) and
 * workers' real MasterLinks, joined by in-memory socket pairs: the whole build lifecycle in
 * milliseconds, with no port and no process. The "worker" behind each link is the test
 * itself: it sees every master message and answers what it likes (a scripted worker).
 */
export interface MemoryFarm {
  store: Store;
  coordinator: Coordinator;
  hub: WorkerHub;
  dataDir: string;
  builders: Map<string, BuilderDefinition>;
  /**
   * A worker connected to this farm's hub — or, with `hubs`, to each of them in turn (its
   * link's URLs are `ws://in-memory/0`, `/1`, …: a lost connection dials the next).
   * `running`: what its hello names as still running (to a master that adopts).
   */
  worker(name: string, opts?: { maxBuilds?: number; hubs?: WorkerHub[]; token?: string; running?: () => { buildId: number; attempt: number }[] }): Promise<ScriptedWorker>;
  /** The build's log as the master holds it (log-store.ts: rows, then a file), '' when it has none. */
  log(buildId: number): Promise<string>;
  close(): Promise<void>;
}

export interface ScriptedWorker {
  link: MasterLink;
  /** The master's end of the current connection (to pause its reading, or cut it). */
  masterEnd(): LinkedSocket;
  workerEnd(): LinkedSocket;
  /** Every master message received, in order. */
  received: MasterMessage[];
  /** Resolves with the next master message (already received or not) that `match` accepts. */
  next<T extends MasterMessage['type']>(type: T, match?: (m: Extract<MasterMessage, { type: T }>) => boolean): Promise<Extract<MasterMessage, { type: T }>>;
  connected(): Promise<void>;
  close(): void;
}

export function builder(name: string, file: Record<string, unknown> = {}): BuilderDefinition {
  return toBuilderDefinition(name, BuilderFileSchema.parse({ requires: { executor: 'host' }, steps: [{ run: 'echo hi' }], ...file }));
}

export const CAPABILITIES: Capabilities = {
  os: 'linux', platform: 'linux', arch: 'x64', cpus: 4, memoryBytes: 8 * 2 ** 30, diskBytes: 100 * 2 ** 30,
  executors: ['host'], labels: [], maxBuilds: 1, virtualization: false,
};

/**
 * A STAND-IN for the shared PostgreSQL log store's acknowledgements (master/store/postgres-logs.ts):
 * files as LogStore writes them, and each worker range counted as stored at once and
 * acknowledged through the coordinator, so a test drives FEATURE_LOG_ACK without a database.
 */
class AckedLogStore extends LogStore {
  private readonly stored = new Map<string, number>();
  onStored: (s: { buildId: number; attempt: number; offset: number }[]) => void = () => undefined;

  override append(buildId: number, data: string | Buffer, range?: WorkerLogRange): void {
    super.append(buildId, data);
    if (!range) return;
    const key = `${buildId}:${range.attempt}`;
    const offset = Math.max(this.stored.get(key) ?? 0, range.from + range.length);
    this.stored.set(key, offset);
    queueMicrotask(() => this.onStored([{ buildId, attempt: range.attempt, offset }]));
  }

  async storedOffset(buildId: number, attempt: number): Promise<number> {
    return this.stored.get(`${buildId}:${attempt}`) ?? 0;
  }

  async flush(): Promise<void> {
    // Stored at append.
  }
}

export async function memoryFarm(defs: BuilderDefinition[], opts: { maxAttempts?: number; heartbeatMs?: number; storeUrl?: string; leaseMs?: number; ackedLogs?: boolean } = {}): Promise<MemoryFarm> {
  const dataDir = tempDir('memfarm');
  const store = await openStore(opts.storeUrl ?? `sqlite:${join(dataDir, 'crowdbake.db')}`);
  // Several masters on one PostgreSQL: this one joins the farm (its lease is not renewed: tests make it long, or end it).
  await store.claims?.join(`in-memory:${dataDir}`, opts.leaseMs ?? 600_000);
  const builders = new Map(defs.map((d) => [d.name, d]));
  const events = new EventBus();
  const logs = opts.ackedLogs ? new AckedLogStore(dataDir, false) : new LogStore(dataDir, false);
  const coordinator = new Coordinator(store, { get: (n) => builders.get(n) ?? null }, logs, new ArtifactStore(dataDir, 2 ** 30), events, {
    maxAttempts: opts.maxAttempts ?? 3, adoptWindowMs: opts.leaseMs ?? 600_000,
  });
  if (logs instanceof AckedLogStore) logs.onStored = (stored) => coordinator.logStored(stored);
  await coordinator.recover();
  const hub = new WorkerHub(store, coordinator, events, { heartbeatMs: opts.heartbeatMs ?? 60_000, tokenCheckMs: 60_000 });
  const links: MasterLink[] = [];
  return {
    store, coordinator, hub, dataDir, builders,
    log: async (id) => {
      const parts: Buffer[] = [];
      for await (const chunk of logs.read(id) ?? []) parts.push(Buffer.from(chunk as Uint8Array));
      return Buffer.concat(parts).toString('utf8');
    },
    worker: async (name, wopts = {}) => {
      const token = wopts.token ?? await createWorkerToken(store, name, []);
      let ends: [LinkedSocket, LinkedSocket] | null = null;
      let port = 0;
      const hubs = wopts.hubs ?? [hub];
      const urls = hubs.map((_, i) => `ws://in-memory/${i}`);
      const link = new MasterLink({
        url: urls[0]!, urls, name, token, agentVersion: 'test',
        capabilities: async () => ({ ...CAPABILITIES, maxBuilds: wopts.maxBuilds ?? 1 }),
        availability: () => ({ accepting: true, reason: '' }),
        backoff: { minMs: 1, maxMs: 5 },
        ...(wopts.running ? { running: wopts.running } : {}),
        connect: (url) => {
          const target = hubs[Number(url.slice('ws://in-memory/'.length))]!;
          // What the master's upgrade answer would announce (worker-hub.ts).
          ends = linkedPair({ [FEATURES_HEADER]: target.features.join(', ') });
          target.accept(asWebSocket(ends[1]), `in-memory:${++port}`, 'in-memory');
          return asWebSocket(ends[0]);
        },
      });
      links.push(link);
      const received: MasterMessage[] = [];
      const taken = new Set<MasterMessage>();
      const waiters: { test: (m: MasterMessage) => boolean; ok: (m: MasterMessage) => void }[] = [];
      link.on('message', (m: MasterMessage) => {
        received.push(m);
        const i = waiters.findIndex((w) => w.test(m));
        if (i >= 0) { taken.add(m); waiters.splice(i, 1)[0]!.ok(m); }
      });
      const connected = () => new Promise<void>((ok) => { if (link.connected) ok(); else link.once('connected', () => ok()); });
      link.start();
      await connected();
      return {
        link, received, connected,
        masterEnd: () => ends![1], workerEnd: () => ends![0],
        next: (type, match) => new Promise((ok) => {
          const test = (m: MasterMessage) => m.type === type && (!match || match(m as never));
          // Each message is handed out once: the first not yet taken that matches.
          const already = received.find((m) => !taken.has(m) && test(m));
          if (already) { taken.add(already); ok(already as never); return; }
          waiters.push({ test, ok: ok as (m: MasterMessage) => void });
        }),
        close: () => link.close(),
      };
    },
    close: async () => {
      for (const l of links) l.close();
      hub.close();
      coordinator.close();
      logs.closeAll();
      await logs.settled();
      await store.close();
      cleanup(dataDir);
    },
  };
}
