import { existsSync } from 'node:fs';
import { createHash, X509Certificate } from 'node:crypto';
import { readFileSync, writeFileSync } from 'node:fs';
import { createServer, type Server } from 'node:http';
import { createServer as createHttpsServer } from 'node:https';
import type { AddressInfo } from 'node:net';
import { join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { DashboardEvent } from '../protocol/api.js';
import { ArtifactStore } from './artifact-store.js';
import { BuilderRegistry, loadMasterConfig } from './config/builder-registry.js';
import { Coordinator, toBuildView } from './coordinator.js';
import { EventBus } from './events.js';
import { EventsSocket } from './events-socket.js';
import { hostRefusal, HttpApi, HttpError } from './http-api.js';
import { clientAddressResolver } from './client-address.js';
import { LogStore, type ArchivableLogs, type BuildLogs } from './log-store.js';
import { LogArchive } from './log-archive.js';
import type { PostgresLogs } from './store/postgres-logs.js';
import { LatentWorkers, type LatentWorkerView } from './provisioners/latent-workers.js';
import type { LocalVmGuestBuilder } from './provisioners/local-vm-provisioner.js';
import { scheduleLeftoverArchive, scheduleObjectRetention, scheduleRetention, scheduleSharedRetention } from './retention.js';
import { ChangeSources } from './sources/change-sources.js';
import { PROVIDERS } from './sources/webhook-payload.js';
import { loadForgeSecret } from './sources/webhook-secret.js';
import { openStore } from './store/open-store.js';
import type { Store } from './store/store.js';
import { Verification } from './verification.js';
import { DiskSpace } from './disk-space.js';
import { loadAdminToken } from './tokens.js';
import { workerView } from './views.js';
import { WorkerHub } from './worker-hub.js';
import { MasterMetrics } from './metrics.js';
import { Volunteers } from './volunteers.js';
import { FewerReplicas } from './fewer-replicas.js';
import { Credit } from './credit.js';
import { Enrollment } from './enrollment/join.js';
import { EnrollmentRoutes } from './enrollment/routes.js';
import { writeFarmInfo, type FarmInfo } from './enrollment/invites.js';
import { log, logLine } from './log.js';
import { DEFAULT_LEASE_MS } from '../protocol/farm.js';
import type { EventRelay } from './farm/event-relay.js';
import { FarmMembership } from './farm/membership.js';
import { SingletonLease } from './farm/singleton.js';
import { Attestations } from './provenance/attestations.js';
import { loadFarmKey } from './provenance/farm-key.js';
import { ProvenanceRoutes } from './provenance/routes.js';
import { WorkerKeys } from './provenance/worker-keys.js';
import { DEFAULT_DIAGNOSIS, Diagnosis, type DiagnosisOptions } from './provenance/diffoscope.js';

export interface MasterOptions {
  configDir: string;
  dataDir: string;
  /** Default 127.0.0.1:8585; port 0 picks a free one. */
  host?: string;
  port?: number;
  /** `sqlite:PATH` (default DATA/crowdbake.db) or `postgres://…`. */
  storeUrl?: string;
  heartbeatMs?: number;
  maxAttempts?: number;
  maxArtifactBytes?: number;
  /** Where the built dashboard lives; default dist/renderer next to this module. */
  staticDir?: string | null;
  /** Reload builder files when they change (default true). */
  watch?: boolean;
  /** Serve https/wss with the project's own certificate (PEM files). */
  tls?: { certFile: string; keyFile: string };
  /** Builds the guest of `local-vm` latent workers (it needs worker code, so the CLI passes it). */
  localVmGuest?: LocalVmGuestBuilder;
  /** How often the farm's capacity (accepting workers) is sampled; default a minute. */
  capacitySampleMs?: number;
  /** Several masters on one PostgreSQL: this master's lease (`--lease`; default DEFAULT_LEASE_MS). */
  leaseMs?: number;
  /** [provenance] diffoscope's limits and command (tests point `command` elsewhere to stand for a master without it). */
  diffoscope?: Partial<DiagnosisOptions>;
}

export interface MasterHandle {
  url: string;
  /** sha256 fingerprint of the TLS certificate (`sha256:HEX`), which workers pin; null without TLS. */
  fingerprint: string | null;
  adminToken: string;
  coordinator: Coordinator;
  registry: BuilderRegistry;
  events: EventBus;
  /** The latent workers (crowdbake.yml `provisioners:`) and the state of each. */
  latent: { list(): LatentWorkerView[] };
  close(): Promise<void>;
}

const DEFAULT_STATIC = fileURLToPath(new URL('../renderer', import.meta.url));

/** Starts a master: store, builder files, scheduler, worker endpoint, REST API and dashboard. */
export async function startMaster(opts: MasterOptions): Promise<MasterHandle> {
  const configDir = resolve(opts.configDir);
  const dataDir = resolve(opts.dataDir);
  const fileConfig = loadMasterConfig(configDir);
  const [cfgHost, cfgPort] = splitListen(fileConfig.listen);
  const host = opts.host ?? cfgHost ?? '127.0.0.1';
  const port = opts.port ?? cfgPort ?? 8585;

  // GET /metrics: the store is observed through a proxy (master/metrics.ts); the queue and
  // sessions are read from the coordinator at scrape time.
  const metrics: MasterMetrics = new MasterMetrics({
    queued: (): number => coordinator.queuedCount(), sessions: () => coordinator.connectedSessions(),
    knownWorkers: async (): Promise<number> => (await store.listWorkers()).length,
  });
  const store: Store = metrics.instrument(await openStore(opts.storeUrl ?? `sqlite:${join(dataDir, 'crowdbake.db')}`));
  const registry = new BuilderRegistry(configDir);
  registry.load();
  for (const e of registry.errors()) log.warn(e);
  const adminToken = loadAdminToken(dataDir);
  const disk = new DiskSpace(dataDir);
  const events = new EventBus();
  // `artifacts.s3`: the farm's bucket, checked before anything is taken (object-store/s3-objects.ts).
  // The AWS SDK (and below, pg; for `ec2` provisioners, the EC2 client) is loaded only when
  // configured: a single master on SQLite does not carry them (tens of MiB; bench/README.md).
  const objects = fileConfig.s3 ? new (await import('./object-store/s3-objects.js')).S3Objects(fileConfig.s3) : undefined;
  if (objects) {
    try {
      await objects.check();
    } catch (e) {
      objects.close();
      await store.close();
      throw e;
    }
  }
  const artifacts = new ArtifactStore(dataDir, opts.maxArtifactBytes ?? fileConfig.maxArtifactBytes, objects);
  // Several masters on one PostgreSQL (master/store/claims.ts): this master joins the farm
  // before it claims anything; the singletons below run where their lease is held.
  const claims = store.claims;
  // Logs: a local database and files on one master (log-store.ts); rows in the shared PostgreSQL with several, so that any master
  // serves any log and an adopted attempt's log goes on with nothing lost (store/postgres-logs.ts).
  const sharedLogs: PostgresLogs | null = claims && opts.storeUrl ? new (await import('./store/postgres-logs.js')).PostgresLogs(opts.storeUrl, () => claims.holder,
    (stored) => coordinator.logStored(stored), (m) => log.warn(m), (n) => metrics.logBytes.inc(n)) : null;
  const heldLogs: ArchivableLogs = sharedLogs ?? new LogStore(dataDir, true, (n) => metrics.logBytes.inc(n));
  // `artifacts.s3`: finished builds' logs go to the bucket as well (log-archive.ts), so any
  // master serves them after the one that held them is gone; live logs stay in heldLogs. The
  // object's key is logKey(build id): the master's own number, never text a worker sent — the
  // log's bytes (the worker's) are only the object's body.
  const logArchive = objects?.shared ? new LogArchive(heldLogs, objects) : null;
  const logs: BuildLogs = logArchive ?? heldLogs;
  const leaseMs = opts.leaseMs ?? DEFAULT_LEASE_MS;
  // Retention: every master sweeps the files on its own disk (artifacts are per master), with
  // the store: artifact files of requeued or refused attempts, spent one-time credentials
  // (started below, once the coordinator knows who is connected). The farm's log rows are
  // swept by one master at a time (the retention singleton).
  let stopRetention = (): void => undefined;
  let stopSharedRetention = (): void => undefined;
  const retention = new SingletonLease(claims, 'retention', leaseMs, {
    start: () => {
      const stopLogs = scheduleSharedRetention(fileConfig.retention.logsMs, sharedLogs, logLine);
      const stopObjects = scheduleObjectRetention(fileConfig.retention.artifactsMs, objects && { what: 'artifact', where: objects.where, removeOlderThan: (c: number) => objects.removeOlderThan('artifacts', c) }, logLine);
      const stopLogObjects = scheduleObjectRetention(fileConfig.retention.logsMs, logArchive && objects && { what: 'log', where: objects.where, removeOlderThan: (c: number) => objects.removeOlderThan('logs', c) }, logLine);
      // Logs a failed or interrupted put left behind (this master's, or a stopped one's rows in
      // the shared store), swept by one master at a time. Only builds that finished a while ago
      // (LEFTOVER_AFTER_MS): a build that just finished is being archived by its own master,
      // and two puts of one build at once could each append the same text to the object.
      const stopLeftovers = logArchive ? scheduleLeftoverArchive(logArchive, store, logLine) : () => undefined;
      stopSharedRetention = () => { stopLogs(); stopObjects(); stopLogObjects(); stopLeftovers(); };
    },
    stop: () => { stopSharedRetention(); stopSharedRetention = () => undefined; },
  }, logLine);
  let api: HttpApi | null = null;
  let url = '';
  const latent = await LatentWorkers.create(fileConfig.provisioners, {
    coordinator: () => coordinator, store, masterUrl: () => url, dataDir, configDir,
    log: logLine, localVmGuest: opts.localVmGuest ?? null,
    publicUrl: fileConfig.url, builder: (n) => registry.get(n)?.definition ?? null,
    // Cloud workers pin a TLS master's certificate (read once the master listens, when pools start).
    pin: () => tls?.fingerprint ?? null,
  });
  // [provenance] Replicas that disagree are compared with diffoscope in the background.
  let diagnosis: Diagnosis | null = null;
  // [crowd] Volunteers' trust (earned from verdicts) and their credit.
  const volunteers = new Volunteers(store, fileConfig.trust);
  await volunteers.load();
  const credit = new Credit(store);
  // Verdicts reach dashboards as build events of every replica of the group.
  const verification = new Verification(store, (ids) => {
    diagnosis?.groupDecided(ids);
    if (events.size === 0) return;
    void Promise.all(ids.map(async (id) => {
      const row = await store.getBuild(id);
      if (row) events.publish({ type: 'build', build: toBuildView(row, await store.listSteps([id]), await verification.viewOf(id)) });
    })).catch((e: Error) => log.error(e.message));
  }, async (verdicts) => { await volunteers.recordVerdicts(verdicts); await credit.verdicts(verdicts); });
  diagnosis = new Diagnosis(store, artifacts, verification, dataDir, { ...DEFAULT_DIAGNOSIS, ...opts.diffoscope }, logLine);
  await verification.load();
  let singletons: SingletonLease[] = [];
  let relay: EventRelay | null = null;
  const latentLease = new SingletonLease(claims, 'latent-workers', leaseMs, { start: () => undefined, stop: () => undefined }, logLine);
  const membership = claims ? new FarmMembership(claims, {
    leaseMs, url: () => url || 'starting', log: logLine,
    onLost: () => coordinator.stepDown(),
    onTick: async () => {
      if (relay) relay.forgetMastersOtherThan(new Set(await claims!.liveMasters()));
      await coordinator.reap();
      await coordinator.refreshQueue();
      for (const s of singletons) await s.tick();
    },
  }) : null;
  await membership?.start();
  // [provenance] Workers' signed statements (checked at each successful finish) and the farm's own key.
  const attestations = new Attestations(store, dataDir);
  const farmSigner = loadFarmKey(dataDir, fileConfig.farmName);
  const coordinator = new Coordinator(store, { get: (n) => registry.get(n)?.definition ?? null }, logs, artifacts, events, {
    adoptWindowMs: leaseMs,
    maxAttempts: opts.maxAttempts ?? fileConfig.maxAttempts,
    // Whether a builder is runnable depends on who is connected.
    onSessionsChanged: () => { if (api && events.size > 0) events.publish({ type: 'builders', builders: api.builderViews() }); },
    onUnplaced: (builders) => { if (url && latentLease.held) latent.unplaced(builders); },
    mayUseCloud: (row, def): boolean => latent.mayUseCloud(row, def),
    verification,
    fewerReplicas: new FewerReplicas(volunteers, verification),
    cannotStart: () => disk.problem(),
    caps: fileConfig.limits,
    credit,
    provenance: attestations,
  });
  disk.watch(() => coordinator.scheduleDispatch());
  await coordinator.recover();
  // Several masters: dashboards on any master see the whole farm live (farm/event-relay.ts).
  relay = claims && opts.storeUrl ? new (await import('./farm/event-relay.js')).EventRelay(opts.storeUrl, events, () => claims.holder, (n) => coordinator.session(n) !== undefined, logLine) : null;
  await relay?.start();
  // NOTIFY only wakes this master; it reads the queue from the table (and every tick anyway).
  const stopListening = claims ? await claims.onWake(() => void coordinator.refreshQueue().catch((e: Error) => log.error(e.message))) : null;
  // Files by age; with the store: artifact files of requeued or refused attempts, spent one-time
  // credentials (a worker connected to another master of the farm counts as connected).
  stopRetention = scheduleRetention(dataDir, fileConfig.retention, logLine, undefined, {
    store, connected: (n) => coordinator.session(n) !== undefined || relay?.remoteWorker(n)?.connected === true,
    ...(heldLogs instanceof LogStore ? { logs: heldLogs } : {}),
  });

  const sources = new ChangeSources({
    dataDir, builders: registry, requestBuild: (b, o) => coordinator.requestBuild(b, { ...o, trigger: 'change' }),
    ...(claims && store.webhooks ? { webhookDedupe: store.webhooks } : {}),
    onStatusChange: () => { if (api && events.size > 0) events.publish({ type: 'builders', builders: api.builderViews() }); },
  });
  // Each forge's own webhook secret exists from the first start, for the admin to paste into the forge.
  for (const forge of PROVIDERS) loadForgeSecret(dataDir, forge);
  // Repository polling runs where the change-sources lease is (webhooks are taken by every master).
  const polling = new SingletonLease(claims, 'change-sources', leaseMs, { start: () => sources.setPolling(true), stop: () => sources.setPolling(false) }, logLine);
  if (claims) sources.setPolling(false);
  singletons = [polling, latentLease, retention];
  const staticDir = opts.staticDir === undefined ? (existsSync(DEFAULT_STATIC) ? DEFAULT_STATIC : null) : opts.staticDir;
  let farm: FarmInfo = { url: '', name: fileConfig.farmName, pin: null };
  const enrollment = new EnrollmentRoutes({
    store, volunteers, credit, farm: () => farm,
    enrollment: new Enrollment(store, { mode: fileConfig.enrollment.mode, farmName: fileConfig.farmName, joinsPerHour: fileConfig.enrollment.joinsPerHour }),
  });
  const addressOf = clientAddressResolver(fileConfig.trustedProxies);
  let listening: { host: string; port: number } | null = null;
  const provenance = new ProvenanceRoutes({
    store, verification, attestations, diagnosis, keys: new WorkerKeys(store, dataDir), signer: () => farmSigner, farmUrl: () => farm.url,
    ownersOf: (b) => registry.get(b)?.definition?.verify?.owners ?? 'any',
  });
  api = new HttpApi({
    store, coordinator, builders: registry, logs, artifacts, adminToken, staticDir, sources, latent, verification, disk, enrollment, provenance,
    remoteWorker: (n) => relay?.remoteWorker(n),
    public: fileConfig.public, addressOf, listen: () => listening, metrics,
    lease: () => membership && {
      holder: membership.holder, held: membership.held, losses: membership.losses,
      singletons: singletons.filter((s) => s.held).map((s) => s.name), adopted: coordinator.adoptedCount,
    },
  });
  const hub = new WorkerHub(store, coordinator, events, { heartbeatMs: opts.heartbeatMs ?? 15_000, addressOf });
  const eventsSocket = new EventsSocket(events, async (): Promise<DashboardEvent[]> => {
    const workers = (await store.listWorkers()).map((w) => ({
      type: 'worker' as const,
      worker: workerView(w.name, JSON.parse(w.capabilities), coordinator.session(w.name) ?? null, w.lastSeenAt),
    }));
    return [{ type: 'builders', builders: api!.builderViews() }, ...workers];
  }, {
    maxSubscribers: fileConfig.eventSubscribers.max, maxPerAddress: fileConfig.eventSubscribers.perAddress, stuckMs: fileConfig.eventSubscribers.stuckAfter,
  }, addressOf);
  registry.on('change', () => {
    sources.refresh();
    events.publish({ type: 'builders', builders: api!.builderViews() });
    coordinator.scheduleDispatch();
  });
  if (opts.watch !== false) registry.watch();
  sources.start();
  for (const s of singletons) await s.tick();

  const tls = opts.tls ? loadTls(opts.tls) : null;
  const handler = (req: Parameters<HttpApi['handle']>[0], res: Parameters<HttpApi['handle']>[1]) => api!.handle(req, res);
  const server: Server = tls ? createHttpsServer({ cert: tls.cert, key: tls.key }, handler) : createServer(handler);
  // `crowdbake token create` prints it, so the volunteer can pin the master's identity.
  if (tls) writeFileSync(join(dataDir, 'tls.fingerprint'), `${tls.fingerprint}\n`);
  server.on('upgrade', (req, socket, head) => {
    const path = new URL(req.url ?? '/', 'http://x').pathname;
    // The same Host rule as for pages (DNS rebinding), for both WebSockets.
    const wrongHost = listening ? hostRefusal(req.headers.host, listening.host, listening.port) : null;
    if (wrongHost) { socket.end(`HTTP/1.1 421 Misdirected Request\r\nconnection: close\r\n\r\n${wrongHost}\n`); return; }
    if (path === '/api/v1/events') {
      try {
        api!.checkRead(req);
      } catch (e) {
        const status = e instanceof HttpError ? e.status : 500;
        socket.end(`HTTP/1.1 ${status} ${status === 429 ? 'Too Many Requests' : status === 403 ? 'Forbidden' : 'Unauthorized'}\r\nconnection: close\r\n\r\n${(e as Error).message}\n`);
        return;
      }
    }
    if (path === '/api/v1/worker') hub.handleUpgrade(req, socket, head);
    else if (path === '/api/v1/events') eventsSocket.handleUpgrade(req, socket, head);
    else socket.end('HTTP/1.1 404 Not Found\r\n\r\n');
  });
  server.keepAliveTimeout = 30_000;
  await new Promise<void>((ok, fail) => {
    server.once('error', (e: NodeJS.ErrnoException) =>
      fail(new Error(e.code === 'EADDRINUSE' ? `cannot listen on ${host}:${port}: the address is in use` : `cannot listen on ${host}:${port}: ${e.message}`)));
    server.listen(port, host, () => ok());
  });
  const addr = server.address() as AddressInfo;
  listening = { host: addr.address, port: addr.port };
  url = `${tls ? 'https' : 'http'}://${addr.family === 'IPv6' ? `[${addr.address}]` : addr.address}:${addr.port}`;
  // `crowdbake invite create` reads it to print join links.
  farm = { url: fileConfig.url ?? url, name: fileConfig.farmName, pin: tls?.fingerprint ?? null };
  writeFarmInfo(dataDir, farm);
  credit.startSampling(() => [...coordinator.connectedSessions()].filter((s) => s.accepting).length, opts.capacitySampleMs);
  // Work queued before we listened (a restart) may need a latent worker.
  coordinator.scheduleDispatch();
  await latent.startPools();

  let closing: Promise<void> | null = null;
  return {
    url, adminToken, coordinator, registry, events, fingerprint: tls?.fingerprint ?? null, latent,
    close: () => (closing ??= (async () => {
      for (const s of singletons) await s.close(true);
      await stopListening?.();
      await relay?.close();
      stopRetention();
      credit.close();
      disk.close();
      await latent.close();
      await diagnosis?.close();
      sources.close();
      coordinator.close();
      registry.close();
      hub.close();
      eventsSocket.close();
      server.closeAllConnections();
      await new Promise<void>((ok) => server.close(() => ok()));
      logArchive?.stop();
      logs.closeAll();
      await logs.settled();
      // An archive that ended during settled() opened the local log database again.
      if (heldLogs instanceof LogStore) heldLogs.closeAll();
      await sharedLogs?.end();
      // Its running attempts wait a lease for their workers to reach another master.
      await membership?.close(leaseMs);
      objects?.close();
      await store.close();
    })()),
  };
}

function splitListen(listen: string | undefined): [string | undefined, number | undefined] {
  if (!listen) return [undefined, undefined];
  const i = listen.lastIndexOf(':');
  return [listen.slice(0, i).replace(/^\[|\]$/g, '') || undefined, Number(listen.slice(i + 1))];
}

/** Reads the certificate and key, and the certificate's sha256 fingerprint (`sha256:hex`). */
function loadTls(files: { certFile: string; keyFile: string }): { cert: Buffer; key: Buffer; fingerprint: string } {
  let cert: Buffer;
  let key: Buffer;
  try {
    cert = readFileSync(files.certFile);
    key = readFileSync(files.keyFile);
  } catch (e) {
    throw new Error(`cannot read the TLS certificate or key: ${(e as Error).message}`);
  }
  let x509: X509Certificate;
  try {
    x509 = new X509Certificate(cert);
  } catch (e) {
    throw new Error(`${files.certFile} is not a PEM certificate: ${(e as Error).message}`);
  }
  return { cert, key, fingerprint: certFingerprint(x509.raw) };
}

/** `sha256:` + lowercase hex of the DER certificate's SHA-256, the form workers pin. */
export function certFingerprint(der: Buffer): string {
  return `sha256:${createHash('sha256').update(der).digest('hex')}`;
}
