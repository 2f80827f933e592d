import { execFileSync, spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';

// Network namespaces for fault tests: a process (a worker, a master) put in a namespace of its
// own, joined to this one by veth pairs with private addresses, so a test can cut its links —
// to its workers, to PostgreSQL, or both — and heal them. Only loopback and links made here are
// touched: nothing is routed to the outside network. Needs root and `ip` (iproute2).
//
// Names carry the test process's pid (`cbns-TAG-PID`, links `cbPIDxKh`/`cbPIDxKn`), so a test
// removes what a crashed earlier run left (`removeLeftovers`) without touching another
// process's namespaces that are still in use.

/** The address PostgreSQL also listens on (on lo; scripts/start-postgres.sh), reachable from a namespace through its link. */
export const FARM_PG_ADDRESS = '10.213.254.1';

const ip = (...args: string[]) => execFileSync('ip', args, { stdio: ['ignore', 'pipe', 'pipe'] }).toString();

/** Why namespaces cannot be made here (a reason to skip), or false. */
export function netnsUnavailable(): string | false {
  if (process.getuid?.() !== 0) return 'needs root (network namespaces and veth pairs)';
  if (spawnSync('ip', ['netns', 'list']).status !== 0) return 'needs `ip netns` (apt-get install iproute2)';
  // Root without the capabilities (a container without CAP_SYS_ADMIN / CAP_NET_ADMIN): say so.
  const probe = `cbns-probe-${process.pid}`;
  const made = spawnSync('ip', ['netns', 'add', probe], { encoding: 'utf8' });
  if (made.status !== 0) return `cannot make a network namespace here: ${made.stderr.trim()}`;
  spawnSync('ip', ['netns', 'del', probe]);
  return false;
}

const NS_NAME = /^cbns-[a-z]+-(\d+)$/;  // cbns-probe-PID too
const LINK_NAME = /^cb(\d+)x\d+[hn]$/;

/** Removes namespaces and host-side links of earlier runs whose process is gone. */
export function removeLeftovers(): void {
  const gone = (pid: string) => !existsSync(`/proc/${pid}`);
  for (const line of ip('netns', 'list').split('\n')) {
    const name = line.split(' ')[0] ?? '';
    const m = NS_NAME.exec(name);
    if (m && gone(m[1]!)) spawnSync('ip', ['netns', 'del', name]);
  }
  for (const line of ip('-o', 'link', 'show').split('\n')) {
    const name = /^\d+: ([^:@]+)/.exec(line)?.[1] ?? '';
    const m = LINK_NAME.exec(name);
    if (m && gone(m[1]!)) spawnSync('ip', ['link', 'del', name]);
  }
}

/** One veth pair between this namespace and a test's. */
export interface VethLink {
  /** This namespace's end. */
  readonly hostAddress: string;
  /** The namespace's end. */
  readonly nsAddress: string;
  /** Partitions: the namespace's end goes down (nothing passes either way; its routes go with it). */
  cut(): void;
  /** Heals the partition: the end comes up and its routes are added again. */
  heal(): void;
}

let links = 0;

/** A network namespace of this test process; `close()` removes it and its links. */
export class NetNamespace {
  private readonly made: string[] = [];
  private closed = false;

  private constructor(readonly name: string) {}

  /** Makes `cbns-TAG-PID` with its loopback up (after removing leftovers of dead runs). */
  static create(tag: string): NetNamespace {
    if (!/^[a-z]{1,8}$/.test(tag)) throw new Error(`namespace tag "${tag}": 1 to 8 lowercase letters`);
    removeLeftovers();
    const name = `cbns-${tag}-${process.pid}`;
    ip('netns', 'add', name);
    const ns = new NetNamespace(name);
    ip('-n', name, 'link', 'set', 'lo', 'up');
    return ns;
  }

  /** The command prefix that runs a program in it. */
  get exec(): string[] {
    return ['ip', 'netns', 'exec', this.name];
  }

  /**
   * A new veth pair with a /30 of its own, 10.213.N.4K/30 (N from the pid, K counts the links
   * this process made); `routes` are destinations (e.g. FARM_PG_ADDRESS) reached through it.
   */
  link(routes: readonly string[] = []): VethLink {
    const k = links++;
    if (k >= 64) throw new Error('more than 64 veth links in one test process');
    const n = process.pid % 250;
    const host = `cb${process.pid}x${k}h`;
    const peer = `cb${process.pid}x${k}n`;
    const hostAddress = `10.213.${n}.${4 * k + 1}`;
    const nsAddress = `10.213.${n}.${4 * k + 2}`;
    ip('link', 'add', host, 'type', 'veth', 'peer', 'name', peer);
    this.made.push(host);
    ip('link', 'set', peer, 'netns', this.name);
    ip('addr', 'add', `${hostAddress}/30`, 'dev', host);
    ip('link', 'set', host, 'up');
    ip('-n', this.name, 'addr', 'add', `${nsAddress}/30`, 'dev', peer);
    const up = () => {
      ip('-n', this.name, 'link', 'set', peer, 'up');
      for (const r of routes) ip('-n', this.name, 'route', 'replace', `${r}/32`, 'via', hostAddress, 'dev', peer);
    };
    up();
    return { hostAddress, nsAddress, cut: () => ip('-n', this.name, 'link', 'set', peer, 'down'), heal: up };
  }

  /** Removes the namespace and its links; safe to call twice. */
  close(): void {
    if (this.closed) return;
    this.closed = true;
    for (const host of this.made) spawnSync('ip', ['link', 'del', host]);
    spawnSync('ip', ['netns', 'del', this.name]);
  }
}
