import type { KeyObject } from 'node:crypto';

/** A project as the agent serves it, or as DATA/projects names it now. */
export interface WatchedProject {
  name: string;
  master: string;
  token: string;
  share: number;
  key?: KeyObject;
}

/** What the agent does to follow DATA/projects (`crowdbake leave`, `projects share`, `rotate-key`, `join`). */
export type ProjectChange<P extends WatchedProject> =
  | { kind: 'leave'; name: string; why: string }
  | { kind: 'rekey'; name: string; key: KeyObject | undefined }
  | { kind: 'share'; name: string; from: number; to: number }
  | { kind: 'join'; project: P };

/**
 * The changes that bring the projects served (`served`) to those in DATA/projects now (`now`):
 * a project gone, or whose master or token changed, is left (a changed one is joined again at
 * once, as a new connection); a new worker key is used from the next build; a new
 * share from the next slot; a project not served yet is joined unless `mayJoin` says no (the
 * agent drains, or that project's master drained it). All of it comes from the volunteer's own
 * files, written by this machine's CLI: nothing here is a master's word.
 */
export function projectChanges<P extends WatchedProject>(served: readonly WatchedProject[], now: readonly P[], mayJoin: (p: P) => boolean): ProjectChange<P>[] {
  const out: ProjectChange<P>[] = [];
  const byName = new Map(now.map((p) => [p.name, p]));
  for (const c of served) {
    const p = byName.get(c.name);
    if (!p || p.token !== c.token || p.master !== c.master) out.push({ kind: 'leave', name: c.name, why: p ? 'its project file changed' : 'left' });
    else if (keyHex(p.key) !== keyHex(c.key)) out.push({ kind: 'rekey', name: c.name, key: p.key });
    else if (p.share !== c.share) out.push({ kind: 'share', name: c.name, from: c.share, to: p.share });
  }
  const left = new Set(out.filter((c) => c.kind === 'leave').map((c) => c.name));
  const servedNames = new Set(served.map((c) => c.name).filter((n) => !left.has(n)));
  for (const p of now) if (!servedNames.has(p.name) && mayJoin(p)) out.push({ kind: 'join', project: p });
  return out;
}

function keyHex(k: KeyObject | undefined): string | undefined {
  return k?.export({ type: 'pkcs8', format: 'der' }).toString('hex');
}
