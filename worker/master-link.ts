import { createHash } from 'node:crypto';
import { EventEmitter } from 'node:events';
import type { TLSSocket } from 'node:tls';
import WebSocket from 'ws';
import { encodeLogFrame, LOG_FRAME_ROOM, logFrameHeader } from '../protocol/log-frame.js';
import { isLoopbackHost } from '../protocol/source-url.js';
import { logText, SPLIT_MIN, type LogText } from './log-text.js';
import { MAX_FRAME_BYTES, PROTOCOL_VERSION } from '../protocol/version.js';
import { WORKER_FEATURES, WORKER_FEATURES_HEADER, FEATURE_ADOPTION, FEATURE_CPU_TIME, FEATURE_LOG_ACK, FEATURE_PROVENANCE, FEATURES_HEADER, parseFeatures } from '../protocol/worker-features.js';
import { decodeMasterMessage, type Capabilities, type MasterMessage, type WorkerMessage } from '../protocol/worker-messages.js';

/** Close codes after which reconnecting cannot help (see master/worker-hub.ts). */
const FATAL_CLOSE = new Map<number, string>([
  [4401, 'the master refused our token'],
  [4426, 'the master speaks another protocol version'],
  [4409, 'another worker connected with the same name'],
]);
// 4429 (too many failed logins from this address) is not fatal: the backoff waits it out.
const HIGH_WATER = 1024 * 1024;
/** Frames up to this size wait for the end of the turn, to leave together (corkForTurn). */
const CORK_MAX = 16 * 1024;
/**
 * FEATURE_LOG_ACK: log text kept until the master acknowledges it is in the farm's store, at
 * most this many characters over all attempts; past it a step's output waits for acknowledgements.
 */
export const MAX_UNACKED_LOG = 8 * 1024 * 1024;
/** Every frame to the master is a text frame, log frames given as bytes too (a master refuses binary frames). */
const TEXT = { binary: false } as const;
/**
 * A log frame as its header and its text, two buffers: written as one WebSocket frame without
 * joining them (writeSplitFrame), where the text had no room before it for the header.
 */
interface SplitFrame { header: string; text: Uint8Array; length: number }
/** A log frame's text not yet acknowledged: where it starts and how long it is in the attempt's log (UTF-16 code units). */
interface KeptLog { from: number; units: number; bytes: Buffer }
const UNTRUSTED_CERT = new Set(['DEPTH_ZERO_SELF_SIGNED_CERT', 'SELF_SIGNED_CERT_IN_CHAIN', 'UNABLE_TO_VERIFY_LEAF_SIGNATURE', 'UNABLE_TO_GET_ISSUER_CERT_LOCALLY', 'CERT_HAS_EXPIRED', 'ERR_TLS_CERT_ALTNAME_INVALID']);

export interface LinkOptions {
  url: string;
  /**
   * Every master of the farm (`--master URL1,URL2`), `url` among them: a lost connection is
   * followed by a dial of the next one, round and round.
   */
  urls?: string[];
  /** The attempts running here, named in the hello to a master that adopts (FEATURE_ADOPTION). */
  running?: () => { buildId: number; attempt: number }[];
  name: string;
  token: string;
  agentVersion: string;
  capabilities: () => Promise<Capabilities>;
  /** Whether the worker takes builds right now; sent in every hello. */
  availability: () => { accepting: boolean; reason: string };
  /** `sha256:HEX` of the master's TLS certificate: anything else is refused before the hello. */
  pin?: string;
  /** Reconnect delays grow from min to max (full jitter). */
  backoff?: { minMs: number; maxMs: number };
  /** Opens the socket (default: a ws WebSocket to `url`); tests pass an in-memory one (test/helpers/linked-sockets.ts). */
  connect?: (url: string) => WebSocket;
}

/**
 * The worker's link to its master. Dials out (works behind NAT), sends `hello`, and
 * reconnects with exponential backoff and jitter until closed or refused for good.
 *
 * Fail-over: with several masters on one store, the master sends `adoption` after its
 * welcome. When that connection is lost while builds run, the link *holds* them for the
 * window it was given: it dials the next master URL, names the running attempts in its hello
 * (only to a master that announced FEATURE_ADOPTION), and keeps what the builds send in order
 * until the new master's welcome, then writes it out. Senders wait meanwhile (their promise
 * is pending), so a build's output is held back, not dropped. If no master welcomes the
 * worker within the window, the held writes fail and `released` is emitted: the builds stop.
 *
 * Events: `connected` (welcome received), `message` (validated MasterMessage),
 * `disconnected` (reason, holding: whether builds are held for adoption), `released` (the
 * adoption window ran out), `fatal` (Error: the master refused us; no more retries).
 */
export class MasterLink extends EventEmitter {
  private ws: WebSocket | null = null;
  private attempt = 0;
  private stopped = false;
  private retryTimer: NodeJS.Timeout | null = null;
  /** Optional fields this master announced in its upgrade answer (protocol/worker-features.ts). */
  private features = new Set<string>();
  private welcomed = false;
  /** Whether this connection's frames are masked (masksFrames): log frames then go as strings. */
  private masking = true;
  /** Cuts a connection the master has been silent on (no frame, no ping) for too long. */
  private silenceTimer: NodeJS.Timeout | null = null;
  /** The master URLs, and which one is dialled next. */
  private readonly urls: string[];
  private urlIndex = 0;
  /** The adoption window the last master gave (its `adoption` message); 0: builds stop on a disconnect. */
  private adoptionMs = 0;
  /** While holding builds for adoption: writes kept in order until the next welcome. */
  private held: { payload: string | Uint8Array; ok: () => void; fail: (e: Error) => void; kept?: boolean }[] | null = null;
  /**
   * FEATURE_LOG_ACK: each attempt's log so far (`next` offset) and its text not yet
   * acknowledged as stored, by `buildId:attempt`. After a fail-over it is sent again, first,
   * to the master that adopts the attempt, which keeps only what its store lacks.
   */
  private readonly logs = new Map<string, { buildId: number; attempt: number; next: number; kept: KeptLog[] }>();
  private unacked = 0;
  /** Attempts stopped because no master took them over in time (`released`): never named or reported again. */
  private readonly givenUp = new Set<string>();
  private ackWaiters: (() => void)[] = [];
  private holdTimer: NodeJS.Timeout | null = null;
  /**
   * The last `state finished` of each attempt sent lately (several masters): a master that
   * stopped (SIGSTOP) never read it, though it went out. After a fail-over the attempt is
   * named in the hello like a running one and its end sent again: the new master adopts and
   * ends it, or (it was ended already) cancels it and ignores the repeat. Kept for
   * 3 heartbeats after it was sent — a master silent that long has been given up anyway — or
   * for the adoption window if longer: a master cut off from its database keeps answering
   * pings while it cannot store the end, and closes the socket only when it steps down, up
   * to two thirds of its lease later (master/farm/membership.ts).
   */
  private readonly finals = new Map<number, { attempt: number; payload: string; at: number }>();
  private heartbeatMs = 15_000;
  /** The ends to send again to the next master (taken from `finals` when a connection is lost). */
  private resend: { buildId: number; attempt: number; payload: string }[] = [];

  constructor(private readonly opts: LinkOptions) {
    super();
    this.urls = opts.urls?.length ? opts.urls : [opts.url];
    this.urlIndex = Math.max(0, this.urls.indexOf(opts.url));
  }

  /** The master URL this link is (or was last) connected to. */
  get url(): string {
    return this.urls[this.urlIndex]!;
  }

  /** Whether builds are being held through a lost connection, waiting for another master. */
  get holding(): boolean {
    return this.held !== null;
  }

  get connected(): boolean {
    return this.welcomed && this.ws?.readyState === WebSocket.OPEN;
  }

  start(): void {
    void this.dial();
  }

  /**
   * Sends a message; resolves at once while the socket's buffer is below the high-water mark,
   * else once this message has been written out (so a step printing fast is held back by the
   * master's pace, with no polling). Rejects when not connected.
   */
  async send(message: WorkerMessage): Promise<void> {
    if ('attempt' in message && this.givenUp.has(`${message.buildId}:${message.attempt}`)) return;
    const payload = JSON.stringify(withoutUnannounced(message, this.features));
    if (message.type === 'state' && message.state === 'finished' && this.adoptionMs > 0) {
      this.finals.set(message.buildId, { attempt: message.attempt, payload, at: Date.now() });
    }
    await this.write(payload);
  }

  /** The finished attempts whose end the last master may not have read (see `finals`). */
  private unconfirmed(): { buildId: number; attempt: number; payload: string }[] {
    const since = Date.now() - Math.max(3 * this.heartbeatMs, this.adoptionMs);
    for (const [id, f] of this.finals) if (f.at < since) this.finals.delete(id);
    return [...this.finals].map(([buildId, f]) => ({ buildId, attempt: f.attempt, payload: f.payload }));
  }

  /**
   * Sends a build's next log text as a log frame (protocol/log-frame.ts), with the same
   * backpressure; returns nothing while the socket is not backed up, so that a step's output
   * flows on without waiting a turn of the event loop per frame. The text is UTF-8 bytes of
   * whole characters (log-text.ts), sent as they are in a text frame; a string is encoded first.
   */
  sendLog(buildId: number, attempt: number, text: LogText | string): void | Promise<void> {
    if (this.givenUp.size && this.givenUp.has(`${buildId}:${attempt}`)) return;
    const t = typeof text === 'string' ? logText(text) : text;
    // The frame's header goes in the room before the text, once (a text sent again is copied: resend, below).
    const room = t.room ?? 0;
    t.room = 0;
    if (!this.features.has(FEATURE_LOG_ACK)) return this.write(this.logFrame(buildId, attempt, t, undefined, room));
    const key = `${buildId}:${attempt}`;
    let log = this.logs.get(key);
    if (!log) this.logs.set(key, (log = { buildId, attempt, next: 0, kept: [] }));
    const from = log.next;
    log.next += t.units;
    log.kept.push({ from, units: t.units, bytes: t.bytes });
    this.unacked += t.units;
    const sent = this.write(this.logFrame(buildId, attempt, t, from, room), true);
    if (this.unacked <= MAX_UNACKED_LOG) return sent;
    // Too much not yet stored: this step's output waits for the master's acknowledgements.
    return Promise.all([sent, new Promise<void>((ok) => this.ackWaiters.push(ok))]).then(() => undefined);
  }

  /**
   * A log frame as this connection sends it best. Unmasked (masksFrames false): the bytes, framed
   * in their room, which ws writes as they are, or, with no room before a text of SPLIT_MIN or
   * more (a step's output as it was read from the pipe, runner.ts LogBuffer), the header and the
   * text apart, to be written without joining them (writeSplitFrame). Masked: as a string, which ws encodes into
   * a buffer of its own and masks there; given bytes, ws would mask them into a copy, and that one
   * more large buffer per frame cost the worker more (V8 collects them late) than decoding the text.
   */
  private logFrame(buildId: number, attempt: number, t: LogText, offset: number | undefined, room: number): string | Uint8Array | SplitFrame {
    if (this.masking) return encodeLogFrame(buildId, attempt, t.bytes.toString('utf8'), offset);
    // A short text is joined with its header (a copy of a few bytes costs less than the writes apart).
    if (room >= LOG_FRAME_ROOM || t.bytes.length < SPLIT_MIN) return encodeLogFrame(buildId, attempt, t.bytes, offset, room);
    const header = logFrameHeader(buildId, attempt, offset);
    return { header, text: t.bytes, length: header.length + t.bytes.length };
  }

  /** The master stored this attempt's log up to `offset`: that much is forgotten here. */
  private acked(buildId: number, attempt: number, offset: number): void {
    const log = this.logs.get(`${buildId}:${attempt}`);
    if (!log) return;
    while (log.kept.length) {
      const k = log.kept[0]!;
      const end = k.from + k.units;
      if (end <= offset) {
        log.kept.shift();
        this.unacked -= k.units;
      } else {
        if (k.from < offset) {
          // Stored up to inside this frame's text (offsets count UTF-16 code units): keep the rest.
          const rest = Buffer.from(k.bytes.toString('utf8').slice(offset - k.from));
          this.unacked -= offset - k.from;
          log.kept[0] = { from: offset, units: end - offset, bytes: rest };
        }
        break;
      }
    }
    // All stored and the attempt over here: nothing more of it will be sent.
    if (log.kept.length === 0 && !(this.opts.running?.() ?? []).some((r) => r.buildId === buildId && r.attempt === attempt)) this.logs.delete(`${buildId}:${attempt}`);
    this.wakeAckWaiters();
  }

  private wakeAckWaiters(): void {
    if (this.unacked > MAX_UNACKED_LOG) return;
    for (const ok of this.ackWaiters.splice(0)) ok();
  }

  /** Forgets the logs of attempts no longer running here (ended and acknowledged, cancelled, released). */
  private pruneLogs(keep: ReadonlySet<string>): void {
    for (const [key, log] of this.logs) {
      if (keep.has(key)) continue;
      for (const k of log.kept) this.unacked -= k.units;
      this.logs.delete(key);
    }
    this.wakeAckWaiters();
  }

  /** A JSON message, or a log frame (UTF-8 bytes, or a split frame: sent as a text frame too). */
  private write(payload: string | Uint8Array | SplitFrame, kept = false): void | Promise<void> {
    const ws = this.ws;
    // The socket is gone but its close has not been heard yet: hold from now, as the close will.
    if (!this.held && (!ws || ws.readyState !== WebSocket.OPEN) && this.adoptionMs > 0 && !this.stopped) this.hold(this.adoptionMs);
    if (this.held) {
      // Between two masters: kept, in order, for the next one (a master-sent window bounds how long),
      // as one buffer: the next connection may mask, and is written through ws.
      const held = this.held;
      const frame = joined(payload);
      return new Promise<void>((ok, fail) => { held.push({ payload: frame, ok, fail, kept }); });
    }
    if (!ws || ws.readyState !== WebSocket.OPEN) return Promise.reject(new Error('not connected to the master'));
    // A large frame lets out what this turn held, and goes at once itself.
    if (payload.length <= CORK_MAX) this.corkForTurn(ws);
    else this.uncork();
    // ws calls back once the frame is written out (everything before it is, too).
    let outcome: Error | null | undefined;
    let settle: ((e: Error | null) => void) | undefined;
    const done = (e?: Error | null): void => {
      outcome = e ?? null;
      settle?.(outcome);
    };
    if (typeof payload === 'string' || payload instanceof Uint8Array) ws.send(payload, TEXT, done);
    else {
      const socket = splitFrameSocket(ws);
      if (socket) writeSplitFrame(socket, payload, done);
      else ws.send(joined(payload), TEXT, done);
    }
    if (ws.bufferedAmount <= HIGH_WATER) return;
    // Backed up: wait for this frame.
    return new Promise<void>((ok, fail) => {
      settle = (e) => (e ? fail(new Error('connection to the master lost')) : ok());
      if (outcome !== undefined) settle(outcome);
    });
  }

  /**
   * Holds the socket's writes until this turn of the event loop is over, so that the frames
   * written in one turn (a build's end: its last log, its step, its state) leave in one write:
   * a trivial build wrote 6 frames in 6 syscalls, each waking the master's event loop. ws
   * corks and uncorks the socket around each frame itself; Node counts corks, so the frames
   * stay together until this uncork (or an end(), which uncorks). `_socket` is ws's own field
   * (no public accessor); without it nothing is held. Only for small frames (CORK_MAX, in the
   * payload's own units: bytes, or UTF-16 code units for a text frame): a larger frame uncorks
   * first, so a loud step's 64 KiB log frames go at once, and what the backpressure sees
   * (bufferedAmount) is what the kernel would not take, not what this turn held back.
   */
  private corkForTurn(ws: WebSocket): void {
    const socket = (ws as unknown as { _socket?: { cork(): void; uncork(): void } })._socket;
    if (!socket || this.corked === socket) return;
    this.uncork();
    socket.cork();
    this.corked = socket;
    setImmediate(() => { if (this.corked === socket) this.uncork(); });
  }

  /** Lets what this turn held go now (before a large frame, before a close frame, which waits for the master's answer, and before the agent exits). */
  private uncork(): void {
    const socket = this.corked;
    this.corked = null;
    socket?.uncork();
  }

  private corked: { uncork(): void } | null = null;

  close(): void {
    this.stopped = true;
    this.release('the worker is stopping');
    if (this.retryTimer) clearTimeout(this.retryTimer);
    if (this.silenceTimer) clearInterval(this.silenceTimer);
    this.uncork();
    this.ws?.close(1000, 'worker stopping');
  }

  private async dial(): Promise<void> {
    if (this.stopped) return;
    let caps: Capabilities;
    try {
      caps = await this.opts.capabilities();
    } catch (e) {
      this.emit('fatal', new Error(`cannot read this machine's capabilities: ${(e as Error).message}`));
      return;
    }
    const pin = this.opts.pin;
    // With a pin the certificate is checked by its fingerprint (the project's own, often
    // self-signed, certificate); without one, by the system's certificate authorities.
    const ws = this.opts.connect?.(this.url)
      ?? new WebSocket(this.url, {
        maxPayload: MAX_FRAME_BYTES, handshakeTimeout: 10_000, ...(pin ? { rejectUnauthorized: false } : {}),
        ...(masksFrames(this.url) ? {} : { generateMask: zeroMask }),
        // What this worker understands of the master's optional messages (an older master ignores the header).
        headers: { [WORKER_FEATURES_HEADER]: WORKER_FEATURES.join(', ') },
      });
    ws.on('upgrade', (res) => {
      // From the master, read on the worker: the names only decide whether optional fields
      // (cpuMs) go into this worker's own messages; nothing is run, opened or trusted from them.
      this.features = parseFeatures(res.headers[FEATURES_HEADER]);
      if (!pin) return;
      const socket = res.socket as TLSSocket;
      const der = typeof socket.getPeerCertificate === 'function' ? socket.getPeerCertificate().raw : undefined;
      const seen = der ? `sha256:${createHash('sha256').update(der).digest('hex')}` : 'no certificate (not TLS)';
      if (seen !== pin.toLowerCase()) {
        // Before `open`: the hello (and its token) is never sent to an impostor.
        this.stopped = true;
        ws.terminate();
        this.emit('fatal', new Error(`the master at ${this.url} is not the one this worker is pinned to: its certificate is ${seen}, expected ${pin}. If the project replaced its certificate, start the worker with the new --pin`));
      }
    });
    this.ws = ws;
    this.masking = masksFrames(this.url);
    this.welcomed = false;
    let fatal: string | null = null;
    let lastHeard = Date.now();
    ws.on('open', () => {
      // Running attempts are named only to a master that adopts (an older one refuses the field).
      const running = this.features.has(FEATURE_ADOPTION)
        ? [...(this.opts.running?.() ?? []), ...this.resend.map(({ buildId, attempt }) => ({ buildId, attempt }))]
          .filter((r) => !this.givenUp.has(`${r.buildId}:${r.attempt}`)).slice(0, 256) : [];
      ws.send(JSON.stringify({
        type: 'hello', protocol: PROTOCOL_VERSION, name: this.opts.name, token: this.opts.token,
        agentVersion: this.opts.agentVersion, capabilities: caps, ...this.opts.availability(),
        ...(running.length ? { running } : {}),
      } satisfies WorkerMessage));
    });
    ws.on('message', (data, isBinary) => {
      lastHeard = Date.now();
      if (isBinary) return;
      const decoded = decodeMasterMessage(data.toString());
      if (!decoded.ok) {
        this.emit('warning', `ignored a bad frame from the master: ${decoded.error}`);
        // An assignment whose spec breaks a rule (a local source, …) is not run; the master is
        // told why, so that it does not wait for it. Only its two numbers are read.
        const ref = assignmentRef(data.toString());
        if (ref) {
          void this.send({ type: 'state', ...ref, state: 'finished', result: 'error', message: `refused by worker ${this.opts.name}: ${decoded.error}`.slice(0, 2000) }).catch(() => undefined);
        }
        return;
      }
      const msg = decoded.value;
      if (msg.type === 'welcome') {
        if (msg.protocol !== PROTOCOL_VERSION) {
          fatal = `the master speaks protocol ${msg.protocol}, this worker ${PROTOCOL_VERSION}`;
          this.uncork();
          ws.close(4426, 'protocol version mismatch');
          return;
        }
        this.welcomed = true;
        this.attempt = 0;
        this.adoptionMs = 0;
        this.heartbeatMs = msg.heartbeatMs;
        this.watchSilence(ws, msg.heartbeatMs, () => lastHeard);
        // FEATURE_LOG_ACK: what the last master may not have stored goes first, each frame with its
        // offset (the new master keeps only what the farm's store lacks); the held log frames
        // are part of it and are not sent twice.
        const resendLogs = this.features.has(FEATURE_LOG_ACK);
        if (resendLogs) {
          const live = new Set([...(this.opts.running?.() ?? []), ...this.resend].map((r) => `${r.buildId}:${r.attempt}`));
          this.pruneLogs(live);
          for (const log of this.logs.values()) for (const k of log.kept) ws.send(encodeLogFrame(log.buildId, log.attempt, k.bytes, k.from), TEXT);
        } else this.pruneLogs(new Set());
        this.flushHeld(ws, resendLogs);
        // Ends the last master may not have read: after the hello named them (adopted by now, or cancelled).
        for (const r of this.resend.splice(0)) ws.send(r.payload);
        this.emit('connected', msg);
        return;
      }
      if (msg.type === 'adoption') {
        // Trust: a number from the master, bounded by the schema (MAX_ADOPTION_WINDOW_MS); it
        // only decides how long this worker's own builds go on without any master.
        this.adoptionMs = msg.windowMs;
        return;
      }
      if (msg.type === 'logAck') {
        // Trust: only drops this worker's own copy of text the master says it stored; a master
        // lying about it can lose only the log of a build it holds anyway.
        this.acked(msg.buildId, msg.attempt, msg.offset);
        return;
      }
      if (msg.type === 'error') {
        if (msg.fatal) fatal = msg.message;
        else this.emit('warning', `the master says: ${msg.message}`);
        return;
      }
      if (!this.stopped) this.emit('message', msg satisfies MasterMessage);
    });
    ws.on('pong', () => { lastHeard = Date.now(); });
    ws.on('ping', () => { lastHeard = Date.now(); });
    ws.on('error', (e: NodeJS.ErrnoException) => {
      if (UNTRUSTED_CERT.has(e.code ?? '') && !this.stopped) {
        this.stopped = true;
        this.emit('fatal', new Error(`the master's certificate is not trusted by this system (${e.code}); pin it instead: --pin sha256:… as printed by \`crowdbake token create\` on the master`));
        return;
      }
      this.emit('warning', `connection to ${this.url}: ${e.message}`);
    });
    ws.on('close', (code, reason) => {
      if (this.silenceTimer) { clearInterval(this.silenceTimer); this.silenceTimer = null; }
      const was = this.welcomed;
      this.welcomed = false;
      const fatalWhy = FATAL_CLOSE.get(code);
      // A master of a farm went away (not a refusal): hold the builds for the next one.
      if (was && !fatalWhy && this.adoptionMs > 0) {
        this.resend = this.unconfirmed();
        this.finals.clear();
      }
      if (was && !fatal && !fatalWhy && this.adoptionMs > 0 && !this.stopped && (this.opts.running?.().length ?? 0) > 0) this.hold(this.adoptionMs);
      if (was || fatal) this.emit('disconnected', fatal ?? (reason.toString() || `code ${code}`), this.holding);
      if (this.urls.length > 1) this.urlIndex = (this.urlIndex + 1) % this.urls.length;
      if (fatalWhy && !this.stopped) {
        this.release(fatalWhy);
        this.stopped = true;
        this.emit('fatal', new Error(`${fatalWhy}: ${fatal ?? reason.toString()}`));
        return;
      }
      this.scheduleRetry();
    });
  }

  /**
   * The master pings every `heartbeatMs` and drops a worker silent for a whole interval (and
   * requeues its builds). Across a network partition the worker hears nothing either: after
   * 2.5 intervals of silence it gives the connection up too, so that its builds stop (they
   * run elsewhere by now) instead of running on unheard, and it starts reconnecting.
   */
  private watchSilence(ws: WebSocket, heartbeatMs: number, lastHeard: () => number): void {
    if (this.silenceTimer) clearInterval(this.silenceTimer);
    const limit = heartbeatMs * 2.5;
    this.silenceTimer = setInterval(() => {
      const silent = Date.now() - lastHeard();
      if (silent <= limit || ws !== this.ws) return;
      this.emit('warning', `no word from the master for ${(silent / 1000).toFixed(1)}s (it pings every ${heartbeatMs / 1000}s); dropping the connection`);
      ws.terminate();
    }, Math.max(100, heartbeatMs / 2));
    this.silenceTimer.unref();
  }

  private hold(windowMs: number): void {
    if (this.held) return;
    this.held = [];
    this.holdTimer = setTimeout(() => this.release(`no master took this worker's builds over within ${Math.round(windowMs / 1000)}s`), windowMs);
    this.holdTimer.unref();
  }

  /** Stops holding: the kept writes fail, and the agent stops the builds (`released`). */
  private release(why: string): void {
    const held = this.held;
    if (!held) return;
    this.held = null;
    // These attempts are given up: the farm requeues them. Nothing more is said of them (an end
    // sent now, `cancelled`, would be taken by a master that adopts them as the build's result).
    for (const r of this.opts.running?.() ?? []) this.givenUp.add(`${r.buildId}:${r.attempt}`);
    // Bounded: the oldest go first (a Set keeps insertion order); an attempt given up that many
    // releases ago has long been stopped, and what it could still send is nothing a master takes.
    for (const k of this.givenUp) { if (this.givenUp.size <= MAX_GIVEN_UP) break; this.givenUp.delete(k); }
    this.adoptionMs = 0;
    this.finals.clear();
    this.resend = [];
    if (this.holdTimer) clearTimeout(this.holdTimer);
    this.holdTimer = null;
    for (const h of held) h.fail(new Error(`connection to the master lost: ${why}`));
    this.pruneLogs(new Set());
    this.emit('released', why);
  }

  /** A master welcomed us: what the builds sent meanwhile goes out, in order. */
  private flushHeld(ws: WebSocket, logsSent = false): void {
    const held = this.held;
    if (!held) return;
    this.held = null;
    if (this.holdTimer) clearTimeout(this.holdTimer);
    this.holdTimer = null;
    for (const h of held) {
      if (logsSent && h.kept) h.ok();
      else ws.send(h.payload, TEXT, (e) => (e ? h.fail(new Error('connection to the master lost')) : h.ok()));
    }
  }

  private scheduleRetry(): void {
    if (this.stopped) return;
    const { minMs, maxMs } = this.opts.backoff ?? { minMs: 500, maxMs: 30_000 };
    const cap = Math.min(maxMs, minMs * 2 ** this.attempt++);
    const delay = minMs / 2 + Math.random() * cap;
    this.emit('retry', delay);
    this.retryTimer = setTimeout(() => void this.dial(), delay);
  }
}

/**
 * Whether frames to this master need a random mask. RFC 6455 masks what a client sends so that
 * a proxy on the path cannot be fooled by bytes chosen to look like something else (a build's
 * log is such bytes). Through TLS (wss://) no proxy reads them, and on loopback there is none:
 * there the mask is zero, which ws takes as "send the frame as it is" — no masked copy of each
 * log frame (bench/README.md, "A loud step's log"). Any master reads such frames (it unmasks
 * with whatever key the frame names).
 */
export function masksFrames(url: string): boolean {
  let u: URL;
  try { u = new URL(url); } catch { return true; }
  return u.protocol !== 'wss:' && !isLoopbackHost(u.hostname);
}

/** How many given-up attempts a link remembers (each release adds at most --builds). */
const MAX_GIVEN_UP = 1024;

/** ws's `generateMask` for a zero mask (the key buffer starts as zeros and stays so). */
function zeroMask(): void { /* nothing: a zero key */ }

/** A split frame as one buffer (a copy of its text), or any other payload as it is. */
function joined(payload: string | Uint8Array | SplitFrame): string | Uint8Array {
  if (typeof payload === 'string' || payload instanceof Uint8Array) return payload;
  return Buffer.concat([Buffer.from(payload.header, 'latin1'), payload.text], payload.length);
}

interface FrameSocket { cork(): void; uncork(): void; write(data: Uint8Array, cb?: (e?: Error | null) => void): boolean }

/**
 * The socket under ws on which a split frame may be written (writeSplitFrame), or undefined,
 * and the frame then goes through ws as one buffer. Only with no extension negotiated: ws then
 * writes every frame it is given onto the socket at once, in order (it queues frames only while
 * compressing, permessage-deflate, or reading a Blob, which this link never sends), so a frame
 * written here beside it cannot land inside one of its own. `_socket` is ws's own field (no
 * public accessor), as in corkForTurn; a socket made in memory for tests has none.
 */
function splitFrameSocket(ws: WebSocket): FrameSocket | undefined {
  if (ws.extensions !== '') return undefined;
  const socket = (ws as unknown as { _socket?: Partial<FrameSocket> })._socket;
  return typeof socket?.write === 'function' && typeof socket.cork === 'function' ? socket as FrameSocket : undefined;
}

/**
 * Writes a log frame's header and text as one WebSocket text frame (RFC 6455 §5.2: FIN and
 * opcode 1, the MASK bit with a zero key, the payload's length) straight onto the socket, in one
 * writev of two buffers: ws's send takes a message as one buffer, and joining a 64 KiB pipe read
 * with its 20-byte header into one was a copy of every byte of a loud step's output (bench/README.md,
 * "A loud step's log"). Only on a connection whose frames are not masked (masksFrames false);
 * the master reads it as any frame (its ws checks the length against maxPayload and the text as UTF-8).
 * `done` is called once the text is written out or the socket failed, as ws's send callback is.
 */
export function writeSplitFrame(socket: FrameSocket, frame: SplitFrame, done: (e?: Error | null) => void): void {
  const head = textFrameHead(frame.length, frame.header);
  socket.cork();
  socket.write(head);
  socket.write(frame.text, done);
  socket.uncork();
}

/**
 * The head of a client's final, unfragmented text frame of `length` payload bytes, masked with a
 * zero key (RFC 6455 §5.2), followed in the same buffer by `start`, the payload's first bytes
 * (ASCII: a log frame's header).
 */
export function textFrameHead(length: number, start = ''): Buffer {
  const size = length < 126 ? 2 : length < 65536 ? 4 : 10;
  const head = Buffer.alloc(size + 4 + start.length); // 4 bytes of zero key after the length
  head[0] = 0x81; // FIN, opcode 1 (text)
  if (size === 2) head[1] = 0x80 | length;
  else if (size === 4) { head[1] = 0x80 | 126; head.writeUInt16BE(length, 2); }
  else { head[1] = 0x80 | 127; head.writeBigUInt64BE(BigInt(length), 2); }
  head.write(start, size + 4, 'latin1');
  return head;
}

/** The build and attempt of a frame that looks like an `assign` (its spec failed the schema), or null. */
function assignmentRef(text: string): { buildId: number; attempt: number } | null {
  if (text.length > MAX_FRAME_BYTES) return null;
  let v: unknown;
  try { v = JSON.parse(text); } catch { return null; }
  const m = v as { type?: unknown; buildId?: unknown; attempt?: unknown } | null;
  const ok = (n: unknown): n is number => typeof n === 'number' && Number.isInteger(n) && n > 0 && n <= 2 ** 32 - 1;
  return m && m.type === 'assign' && ok(m.buildId) && ok(m.attempt) ? { buildId: m.buildId, attempt: m.attempt } : null;
}

/** `--master URL1,URL2` (or repeated): every master of a farm, as worker endpoint URLs. */
export function masterUrls(master: string): string[] {
  const urls = master.split(',').map((u) => u.trim()).filter(Boolean).map(workerEndpoint);
  if (urls.length === 0) throw new Error('--master names no URL');
  return urls;
}

export function workerEndpoint(master: string): string {
  let u: URL;
  try {
    u = new URL(master);
  } catch {
    throw new Error(`--master "${master}" is not a URL (expected ws://HOST:PORT or http://HOST:PORT)`);
  }
  if (u.protocol === 'http:') u.protocol = 'ws:';
  else if (u.protocol === 'https:') u.protocol = 'wss:';
  else if (u.protocol !== 'ws:' && u.protocol !== 'wss:') throw new Error(`--master "${master}": use ws://, wss://, http:// or https://`);
  if (u.pathname === '/' || u.pathname === '') u.pathname = '/api/v1/worker';
  return u.toString();
}

/** An older master refuses fields it does not know: `cpuMs` and `provenance` go only to a master that announced them. */
function withoutUnannounced(message: WorkerMessage, features: ReadonlySet<string>): WorkerMessage {
  if (message.type !== 'state') return message;
  let out = message;
  if (out.cpuMs !== undefined && !features.has(FEATURE_CPU_TIME)) { const { cpuMs: _dropped, ...rest } = out; out = rest; }
  if (out.provenance !== undefined && !features.has(FEATURE_PROVENANCE)) { const { provenance: _dropped, ...rest } = out; out = rest; }
  return out;
}
