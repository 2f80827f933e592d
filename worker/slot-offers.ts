import type { Decision } from './policy.js';
import { pickByShare } from './projects.js';

/** How long a project is offered a free slot before the offer moves on (it may have no work). */
export const OFFER_MS = 1000;

/** What a project is told: whether it may assign now, and why (`availability` on the wire). */
export interface Availability { accepting: boolean; reason: string }

/** One project's connection as the offers see it (worker/agent.ts's Conn). */
export interface OfferedProject {
  readonly name: string;
  readonly share: number;
  readonly link: { readonly connected: boolean };
  /** What it was told last (null: nothing since it connected). */
  lastOffer: Availability | null;
  /** What it would be told now (the link's hello reads it). */
  availability: Availability;
  send(m: { type: 'availability' } & Availability): unknown;
}

export interface SlotOffersOptions<P extends OfferedProject> {
  /** The volunteer's rules now (the governor's last decision). */
  decision: () => Pick<Decision, 'run' | 'reason'>;
  projects: () => P[];
  /** Builds running or waiting for a slot here, all projects together. */
  busy: () => number;
  maxBuilds: number;
  /** Slot-milliseconds a project has used (finished builds and the running ones so far). */
  usedMs: (p: P) => number;
  /** While the agent leaves, nobody is offered anything (the masters were told `drain`). */
  draining: () => boolean;
  log: (line: string) => void;
  offerMs?: number;
}

/**
 * Which project may take the next free slot ([crowd] resource share). With one project: it is
 * always its turn (the master counts our slots). With several: only the connected project with
 * the largest share-weighted deficit (pickByShare) is offered `accepting`; if it assigns nothing
 * within OFFER_MS (no work there), the offer moves on to the next, round and round, so that a
 * master without work does not block the others. Uses only `availability`, which every master
 * understands: no protocol change. Nothing of it comes from a master: it reads the volunteer's
 * rules and this agent's own counts.
 */
export class SlotOffers<P extends OfferedProject> {
  private timer: NodeJS.Timeout | null = null;
  private readonly skipped = new Set<string>();
  private offeredTo: string | null = null;

  constructor(private readonly o: SlotOffersOptions<P>) {}

  /** Tells each project whether it may assign now; `force` sends even what it was told already. */
  offer(force = false): void {
    if (this.timer) { clearTimeout(this.timer); this.timer = null; }
    const d = this.o.decision();
    const list = this.o.projects();
    let turn: string | null = null;
    let why = d.reason;
    if (list.length === 1) turn = d.run ? list[0]!.name : null;
    else if (d.run && this.o.busy() < this.o.maxBuilds) {
      const candidates = list.filter((c) => c.link.connected);
      if (candidates.length && candidates.every((c) => this.skipped.has(c.name))) this.skipped.clear();
      turn = pickByShare(candidates.map((c) => ({ name: c.name, share: c.share, used: this.o.usedMs(c), eligible: !this.skipped.has(c.name) })));
      why = 'another project\'s turn (resource share)';
      if (turn !== null && turn !== this.offeredTo) this.skipped.clear();
    } else if (d.run) why = `all ${this.o.maxBuilds} build slot(s) of this computer are in use`;
    if (turn !== this.offeredTo && list.length > 1) this.o.log(turn ? `next build slot offered to ${turn}` : 'no build slot offered');
    this.offeredTo = turn;
    const draining = this.o.draining();
    for (const c of list) {
      if (draining) continue;
      const a = c.name === turn ? { accepting: true, reason: d.reason } : { accepting: false, reason: why };
      c.availability = a;
      if (!c.link.connected) continue;
      if (!force && c.lastOffer && c.lastOffer.accepting === a.accepting && c.lastOffer.reason === a.reason) continue;
      c.lastOffer = a;
      void c.send({ type: 'availability', ...a });
    }
    if (turn !== null && list.length > 1) {
      const t = turn;
      this.timer = setTimeout(() => { this.skipped.add(t); this.offer(); }, this.o.offerMs ?? OFFER_MS);
      this.timer.unref();
    }
  }

  close(): void {
    if (this.timer) clearTimeout(this.timer);
    this.timer = null;
  }
}
