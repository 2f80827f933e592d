import type { KeyObject } from 'node:crypto';
import type { MasterMessage } from '../protocol/worker-messages.js';
import type { IntakeProject } from './build-intake.js';
import { MasterLink, masterUrls, type LinkOptions } from './master-link.js';

/** One project (master) this agent serves, with its share of the machine ([crowd]). */
export interface ProjectLink {
  name: string;
  master: string;
  token: string;
  pin?: string;
  share: number;
  /** [provenance] The worker key enrolled when it joined: successful attempts are signed with it. */
  key?: KeyObject;
}

/** One project's connection: its master link and the builds running for it (build-intake.ts). */
export interface Conn extends IntakeProject {
  share: number;
  project: ProjectLink;
  link: MasterLink;
  /** What this project is told: whether it may assign now (slot-offers.ts). */
  availability: { accepting: boolean; reason: string };
  lastOffer: { accepting: boolean; reason: string } | null;
}

export interface ConnectOptions {
  /** The worker name this project knows the agent by. */
  worker: string;
  /** Prefixed to this project's log lines (`NAME: `, or nothing for a lone --master). */
  where: string;
  executors: readonly string[];
  agentVersion: string;
  backoff?: { minMs: number; maxMs: number };
  /** What the master is told in each hello and availability message, beside the slot offers. */
  availability: (c: Conn) => { accepting: boolean; reason: string };
  capabilities: LinkOptions['capabilities'];
  /** Set while the agent drains: a master (re)connected to is told at once. */
  draining: () => { now: boolean; reason: string } | null;
  onMessage: (c: Conn, m: MasterMessage) => void;
  /** The slots may go to another project now (this one connected or went away). */
  offer: () => void;
  /** Aborts this project's running and held builds. */
  stopBuilds: (c: Conn) => void;
  /** The master refused this worker for good (a revoked token, a wrong pin). */
  fatal: (c: Conn) => void;
  log: (line: string) => void;
}

/**
 * Connects to project `p`'s master (several masters of one farm, `--master URL1,URL2`: the
 * link fails over between them) and wires what its link reports to the agent: a master lost
 * for good stops its builds (it requeues them, so nothing runs twice); one of several lost
 * keeps them running for the next master to adopt until the link says they are released.
 */
export function connectProject(p: ProjectLink, o: ConnectOptions): Conn {
  const urls = masterUrls(p.master);
  const url = urls[0]!;
  const { where, log } = o;
  if (p.pin) log(`${p.name}: the master's certificate is pinned: ${p.pin}`);
  const c: Conn = {
    name: p.name, url, worker: o.worker, share: p.share, project: p, running: new Map(), usedMs: 0,
    availability: { accepting: false, reason: 'starting' }, lastOffer: null,
    link: null as unknown as MasterLink, send: async () => undefined,
  };
  c.link = new MasterLink({
    url, urls, name: o.worker, token: p.token, ...(p.pin ? { pin: p.pin } : {}), agentVersion: o.agentVersion,
    ...(o.backoff ? { backoff: o.backoff } : {}),
    running: () => [...c.running].map(([buildId, r]) => ({ buildId, attempt: r.attempt })),
    availability: () => o.availability(c),
    capabilities: o.capabilities,
  });
  c.send = (m) => c.link.send(m).catch(() => undefined);
  c.link.on('message', (m: MasterMessage) => o.onMessage(c, m));
  c.link.on('connected', () => {
    log(`${where}connected to ${c.link.url} as ${o.worker} (executors: ${o.executors.join(', ')})`);
    c.lastOffer = c.availability;
    const draining = o.draining();
    if (draining) void c.send({ type: 'drain', ...draining });
    o.offer();
  });
  c.link.on('warning', (w: string) => log(`${where}${w}`));
  c.link.on('disconnected', (why: string, holding: boolean) => {
    c.lastOffer = null;
    if (holding) {
      // Several masters: the builds go on; the next master adopts them (or cancels those it
      // may not), and if none does within the window the link says `released`.
      log(`${where}disconnected: ${why}; keeping ${c.running.size} build(s) running for the next master to adopt`);
    } else {
      log(`${where}disconnected: ${why}`);
      // The master requeues our builds when we vanish; stop them so nothing runs twice.
      o.stopBuilds(c);
    }
    o.offer();
  });
  c.link.on('released', (why: string) => {
    log(`${where}${why}; stopping its builds`);
    o.stopBuilds(c);
  });
  c.link.on('fatal', (e: Error) => {
    log(`${where}stopping: ${e.message}`);
    o.stopBuilds(c);
    o.fatal(c);
  });
  c.link.start();
  return c;
}
