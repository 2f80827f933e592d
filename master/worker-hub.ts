import type { IncomingMessage } from 'node:http';
import type { Duplex } from 'node:stream';
import { WebSocket, WebSocketServer, type RawData } from 'ws';
import { MAX_ADOPTION_WINDOW_MS, PROTOCOL_VERSION, MAX_FRAME_BYTES, oldestAcceptedProtocol } from '../protocol/version.js';
import { isUtf8 } from 'node:buffer';
import { decodeLogFrameBytes, isLogFrame, type LogBytesMessage } from '../protocol/log-frame.js';
import { FEATURE_ADOPTION, FEATURE_LOG_ACK, FEATURES_HEADER, MASTER_FEATURES, parseFeatures, WORKER_FEATURES_HEADER, workerUnderstandsDrain } from '../protocol/worker-features.js';
import { decodeWorkerMessage, type WorkerHello, type WorkerMessage } from '../protocol/from-worker.js';
import type { MasterMessage } from '../protocol/worker-messages.js';
import type { Coordinator, WorkerSession } from './coordinator.js';
import type { EventBus } from './events.js';
import type { Store } from './store/store.js';
import { AuthThrottle } from './auth-throttle.js';
import { verifyWorkerToken } from './tokens.js';
import { ownerOf, trustOf } from './volunteers.js';
import { workerView } from './views.js';
import { log } from './log.js';

const utf8 = new TextDecoder();
const HELLO_TIMEOUT_MS = 10_000;
const MAX_BAD_FRAMES = 100;
/** Every this many token checks (one each `tokenCheckMs`, 500 ms: every 30 s) all token rows are read, not only the revoked names. */
export const FULL_TOKEN_SWEEP_EVERY = 60;

/** A WebSocket close reason may be at most 123 bytes of UTF-8: cut at a character boundary. */
export function closeReason(message: string): string {
  let out = '';
  for (const ch of message) {
    if (Buffer.byteLength(out + ch) > 120) break;
    out += ch;
  }
  return out;
}

/** WebSocket close codes the master uses; the worker reads them to decide whether to retry. */
export const CloseCode = {
  protocolError: 4400,
  unauthorized: 4401,
  throttled: 4429,
  versionMismatch: 4426,
  replaced: 4409,
  shutdown: 1001,
} as const;

/**
 * Accepts worker connections on `/api/v1/worker`: waits for `hello`, checks the protocol
 * version and the token, then hands an authenticated session to the coordinator. Every frame
 * is decoded and validated here; nothing behind this class sees unparsed data.
 */
export class WorkerHub {
  private readonly wss = new WebSocketServer({ noServer: true, maxPayload: MAX_FRAME_BYTES });
  /** Every open socket, and whether it showed life since the last ping. */
  private readonly sockets = new Map<WebSocket, boolean>();
  private readonly heartbeat: NodeJS.Timeout;
  private readonly tokenCheck: NodeJS.Timeout;
  /** Authenticated sessions, their socket and the hash of the token they logged in with. */
  private readonly live = new Map<WorkerSession, { ws: WebSocket; hash: string; volunteerId: string | null }>();
  private checkingTokens = false;
  private tokenChecks = 0;
  private closing = false;
  /** Sessions told to drain that cannot decode `drain` (protocol 1): closed once their builds are done. */
  private readonly drainByClose = new Map<WorkerSession, string>();

  constructor(
    private readonly store: Store,
    private readonly coordinator: Coordinator,
    private readonly events: EventBus,
    private readonly options: { heartbeatMs: number; tokenCheckMs?: number; addressOf?: (req: IncomingMessage) => string },
    private readonly throttle: AuthThrottle = new AuthThrottle(),
  ) {
    this.heartbeat = setInterval(() => { this.ping(); for (const s of this.drainByClose.keys()) this.closeIfDrained(s); }, options.heartbeatMs);
    this.heartbeat.unref();
    // Optional fields this master accepts (protocol/worker-features.ts); older workers ignore the header.
    this.features = [...MASTER_FEATURES, ...(this.adopts ? [FEATURE_ADOPTION] : []), ...(this.coordinator.acksLogs ? [FEATURE_LOG_ACK] : [])];
    this.wss.on('headers', (headers) => { headers.push(`${FEATURES_HEADER}: ${this.features.join(', ')}`); });
    // `crowdbake token revoke` writes the store, possibly from another process or host: the
    // master re-reads the token rows often enough that a revoked worker is gone within a second.
    this.tokenCheck = setInterval(() => void this.checkTokens(), options.tokenCheckMs ?? 500);
    this.tokenCheck.unref();
  }

  /**
   * Closes every session whose token was revoked (or deleted, or replaced) since it logged in.
   * Revocation is the one way the product changes a token row (`token revoke`; rows are never
   * deleted or re-hashed), so most checks read only the revoked names — with 10,000 workers
   * connected, reading every token row twice a second held the store's one ordered
   * connection (PostgreSQL) for tens of milliseconds each time, and every build's writes
   * waited behind it. Every FULL_TOKEN_SWEEP_EVERY-th check reads all rows, for a row
   * deleted or changed by hand.
   */
  private async checkTokens(): Promise<void> {
    if (this.checkingTokens || this.live.size === 0 || this.closing) return;
    this.checkingTokens = true;
    try {
      const full = this.tokenChecks++ % FULL_TOKEN_SWEEP_EVERY === 0;
      const rows = full ? new Map((await this.store.listTokens()).map((t) => [t.name, t])) : null;
      const revoked = rows ? null : new Set(await this.store.listRevokedTokenNames());
      // [crowd] The volunteer's trust too: a ban disconnects all their workers; a promotion or
      // demotion changes which builds the session may get from now on.
      const volunteers = [...this.live.values()].some((l) => l.volunteerId)
        ? new Map((await this.store.listVolunteers()).map((v) => [v.id, v])) : new Map();
      let trustChanged = false;
      for (const [session, { ws, hash, volunteerId }] of this.live) {
        const row = rows?.get(session.name);
        const tokenOk = rows ? row !== undefined && !row.revokedAt && row.hash === hash : !revoked!.has(session.name);
        const volunteer = volunteerId ? volunteers.get(volunteerId) : null;
        const banned = volunteerId !== null && (!volunteer || volunteer.trust === 'banned');
        if (tokenOk && !banned) {
          const trust = trustOf(volunteer ?? null);
          if (session.trust !== trust) { session.trust = trust; trustChanged = true; }
          continue;
        }
        this.live.delete(session);
        const message = banned ? 'authentication failed: volunteer banned' : 'authentication failed: token revoked';
        if (ws.readyState === ws.OPEN) ws.send(JSON.stringify({ type: 'error', message, fatal: true } satisfies MasterMessage));
        ws.close(CloseCode.unauthorized, message);
      }
      if (trustChanged) this.coordinator.scheduleDispatch();
    } catch (e) {
      log.error(`cannot re-check worker tokens: ${(e as Error).message}`);
    } finally {
      this.checkingTokens = false;
    }
  }

  /** What this master announces in its upgrade answer (protocol/worker-features.ts). */
  readonly features: readonly string[];

  /** Whether this master adopts running attempts (several masters on one store): FEATURE_ADOPTION. */
  get adopts(): boolean {
    return this.coordinator.shared;
  }

  handleUpgrade(req: IncomingMessage, socket: Duplex, head: Buffer): void {
    // What the worker says it understands: only whether a `drain` is sent or the socket closed instead.
    this.wss.handleUpgrade(req, socket, head, (ws) =>
      this.accept(ws, `${req.socket.remoteAddress}:${req.socket.remotePort}`, this.options.addressOf?.(req) ?? req.socket.remoteAddress ?? 'unknown',
        parseFeatures(req.headers[WORKER_FEATURES_HEADER])));
  }

  /**
   * Serves one worker connection: `peer` names it in messages, `address` is the client's
   * address (for the login throttle). Public so that tests can hand it an in-memory socket
   * (test/helpers/linked-sockets.ts) instead of an upgraded HTTP connection.
   */
  accept(ws: WebSocket, peer: string, address: string, announced: ReadonlySet<string> = new Set()): void {
    this.sockets.set(ws, true);
    let session: WorkerSession | null = null;
    let badFrames = 0;
    let chain: Promise<void> = Promise.resolve();
    // A socket ws made (handleUpgrade, no skipUTF8Validation) has checked every text frame as
    // UTF-8 and closed the connection (1007) on one that is not; any other (in memory) has not.
    const textChecked = ws instanceof WebSocket;
    const helloTimer = setTimeout(() => fail(CloseCode.protocolError, 'no hello within 10s'), HELLO_TIMEOUT_MS);

    const send = (m: MasterMessage) => { if (ws.readyState === ws.OPEN) ws.send(JSON.stringify(m)); };
    const fail = (code: number, message: string) => {
      send({ type: 'error', message, fatal: true });
      ws.close(code, closeReason(message));
    };

    ws.on('message', (data: RawData, isBinary: boolean) => {
      this.sockets.set(ws, true);
      if (isBinary) return refuse('binary frames are not part of the protocol');
      const bytes = Array.isArray(data) ? Buffer.concat(data) : data instanceof ArrayBuffer ? Buffer.from(data) : data;
      let msg: WorkerMessage | LogBytesMessage;
      if (isLogFrame(bytes)) {
        // A build's log text in a frame of its own (protocol/log-frame.ts). Its text stays the
        // frame's bytes, written to the log as they are: UTF-8, as ws checked them (textChecked),
        // or, from a socket that did not check, once checked here, and decoded with replacement
        // characters where they are not.
        const decoded = decodeLogFrameBytes(bytes);
        if (!decoded.ok) return refuse(`bad frame: ${decoded.error}`);
        const value = decoded.value;
        msg = textChecked || isUtf8(value.data) ? value : { ...value, data: utf8.decode(value.data) };
      } else {
        const decoded = decodeWorkerMessage(bytes.toString());
        if (!decoded.ok) return refuse(`bad frame: ${decoded.error}`);
        msg = decoded.value;
      }
      if (msg.type === 'hello') {
        if (session) return refuse('hello sent twice');
        clearTimeout(helloTimer);
        // Hold later frames until the hello is through, so none overtakes it.
        chain = chain.then(() => this.hello(ws, msg, send, fail, address, announced)).then((s) => { session = s; });
        return;
      }
      const next = msg;
      chain = chain.then(() => {
        if (!session) return refuse(`"${next.type}" before a successful hello`);
        const s = session;
        return this.coordinator.handle(s, next).then(() => this.closeIfDrained(s));
      }).catch((e) => log.error(`worker ${session?.name ?? peer}:`, e));
    });
    ws.on('pong', () => this.sockets.set(ws, true));
    ws.on('close', () => {
      clearTimeout(helloTimer);
      this.sockets.delete(ws);
      chain = chain.then(async () => {
        // On shutdown the store keeps these builds as running; the next start requeues them.
        if (session) { this.live.delete(session); this.drainByClose.delete(session); }
        if (!session || this.closing) return;
        await this.coordinator.removeSession(session);
        await this.store.upsertWorker({ name: session.name, capabilities: JSON.stringify(session.capabilities), lastSeenAt: new Date().toISOString() });
        this.events.publish({ type: 'worker', worker: workerView(session.name, session.capabilities, null) });
      }).catch((e) => log.error('worker socket:', e));
    });
    ws.on('error', () => { /* 'close' follows */ });

    function refuse(message: string): void {
      badFrames++;
      send({ type: 'error', message, fatal: false });
      if (badFrames >= MAX_BAD_FRAMES) fail(CloseCode.protocolError, `too many bad frames (last: ${message})`);
    }
  }

  private async hello(
    ws: WebSocket, hello: WorkerHello, send: (m: MasterMessage) => void, fail: (code: number, m: string) => void, peerAddress: string,
    announced: ReadonlySet<string> = new Set(),
  ): Promise<WorkerSession | null> {
    const oldest = oldestAcceptedProtocol(new Date());
    if (hello.protocol < oldest || hello.protocol > PROTOCOL_VERSION) {
      const range = oldest === PROTOCOL_VERSION ? `${PROTOCOL_VERSION}` : `${oldest} to ${PROTOCOL_VERSION}`;
      fail(CloseCode.versionMismatch, `protocol version ${hello.protocol} is not supported; this master speaks ${range}${hello.protocol < oldest ? ' (update this worker)' : ''}`);
      return null;
    }
    const { waitMs: wait, why } = this.throttle.blockedForName(peerAddress, hello.name);
    if (wait > 0) {
      fail(CloseCode.throttled, `${why}; try again in ${Math.ceil(wait / 1000)}s`);
      return null;
    }
    const check = await verifyWorkerToken(this.store, hello.token);
    if (!check.ok) {
      this.throttle.failName(peerAddress, hello.name);
      fail(CloseCode.unauthorized, `authentication failed: ${check.reason}`);
      return null;
    }
    if (check.token.name !== hello.name) {
      fail(CloseCode.unauthorized, `authentication failed: this token belongs to worker "${check.token.name}", not "${hello.name}"`);
      return null;
    }
    this.throttle.succeeded(peerAddress, hello.name);
    if (ws.readyState !== ws.OPEN) return null;
    const old = this.coordinator.session(hello.name);
    if (old) {
      old.send({ type: 'error', message: 'another connection with this worker name replaced this one', fatal: true });
      await this.coordinator.removeSession(old);
      old.close('replaced by a newer connection');
    }
    const caps = hello.capabilities;
    const understandsDrain = workerUnderstandsDrain(announced, hello.protocol);
    const session: WorkerSession = {
      name: hello.name,
      // Access is what the admin granted the token: builders' `requires.labels` are matched
      // against the token's labels only, and the worker runs at most the token's maxBuilds.
      // What the worker claims (caps.labels, caps.maxBuilds) is shown, never trusted.
      labels: new Set(check.token.labels),
      executors: caps.executors,
      maxBuilds: Math.min(caps.maxBuilds, check.token.maxBuilds),
      memoryBytes: caps.memoryBytes,
      diskBytes: caps.diskBytes,
      platform: caps.platform,
      arch: caps.arch,
      cpus: caps.cpus,
      // [crowd] From the store, never from the worker: its volunteer's trust (a maintainer's token: trusted), its owner.
      trust: trustOf(check.volunteer),
      owner: ownerOf(check.token),
      // [cloud] A one-time credential (a cloud instance's): one build, and `cloud: never` builders stay away.
      ...(check.token.oneTime ? { buildsLeft: 1, cloud: true } : {}),
      running: 0,
      builds: new Set<number>(),
      frozen: new Set<number>(),
      capabilities: caps,
      accepting: hello.accepting,
      reason: hello.reason,
      // A worker that cannot decode `drain` (protocol 1, nothing announced) would take it as a
      // bad frame and go on: it is sent nothing; the coordinator has already stopped assigning
      // to it, and its connection is closed once its builds are done (at once with `now`).
      send: understandsDrain ? send : (m) => {
        if (m.type !== 'drain') { send(m); return; }
        this.drainByClose.set(session, m.reason);
        setImmediate(() => this.closeIfDrained(session));
      },
      close: (why, retry) => ws.close(retry ? CloseCode.shutdown : CloseCode.replaced, closeReason(why)),
    };
    this.live.set(session, { ws, hash: check.token.hash, volunteerId: check.token.volunteerId ?? null });
    await this.store.upsertWorker({ name: hello.name, capabilities: JSON.stringify(caps), lastSeenAt: new Date().toISOString() });
    // In the worker's own version: an older worker (protocol 1 sends logs as JSON messages, which are still taken) checks for its own number.
    send({ type: 'welcome', protocol: hello.protocol, name: hello.name, heartbeatMs: this.options.heartbeatMs });
    // Several masters: the worker keeps its builds through a lost connection and names them
    // to the next master it reaches, which adopts those the store says are its own.
    if (this.coordinator.shared) send({ type: 'adoption', windowMs: Math.min(this.coordinator.adoptionWindowMs, MAX_ADOPTION_WINDOW_MS) });
    // Frames after the hello wait for this (the hub's chain), so none of them overtakes an adoption.
    if (hello.running?.length) await this.coordinator.adopt(session, hello.running);
    this.coordinator.addSession(session);
    this.events.publish({ type: 'worker', worker: workerView(session.name, caps, session) });
    return session;
  }

  /**
   * Closes the connection of a drained session that has no `drain` message (protocol 1) once it
   * runs nothing, with 4409 — the one close code such a worker treats as final (it does not
   * reconnect, so it stays drained) — and the reason, which it logs.
   */
  private closeIfDrained(session: WorkerSession): void {
    const reason = this.drainByClose.get(session);
    if (reason === undefined || session.builds.size > 0) return;
    this.drainByClose.delete(session);
    session.close(`drained: ${reason}`);
  }

  /** A socket silent for a whole heartbeat interval (no frame, no pong) is cut off. */
  private ping(): void {
    for (const [ws, alive] of this.sockets) {
      if (!alive) { ws.terminate(); continue; }
      this.sockets.set(ws, false);
      if (ws.readyState === ws.OPEN) ws.ping();
    }
  }

  close(): void {
    this.closing = true;
    clearInterval(this.heartbeat);
    clearInterval(this.tokenCheck);
    for (const ws of this.sockets.keys()) ws.close(CloseCode.shutdown, 'master shutting down');
    this.wss.close();
  }
}
