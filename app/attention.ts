import type { UpdateNotice } from '../protocol/app-ipc.js';
import type { AgentStatus } from '../protocol/control-api.js';
import { PROTOCOL_VERSION, VersionInfoSchema, type VersionInfo } from '../protocol/version.js';

/** Below this much free space in the worker's data directory, the volunteer is told. */
export const DISK_NEARLY_FULL_BYTES = 2 * 1024 ** 3;

/** What the masters' stated protocol ranges mean for this app: nothing, an update available, or required. */
export function updateNotice(ranges: readonly { master: string; info: VersionInfo | null }[], ours = PROTOCOL_VERSION): UpdateNotice {
  const refuses = ranges.filter((r) => r.info && ours < r.info.workerProtocols.oldest);
  if (refuses.length) return { state: 'required', message: `An update is required: ${refuses.map((r) => r.master).join(', ')} no longer accepts this version (worker protocol ${ours}; it needs ${refuses[0]!.info!.workerProtocols.oldest} or newer).` };
  const newer = ranges.filter((r) => r.info && ours < r.info.workerProtocols.newest);
  if (newer.length) {
    const until = newer.map((r) => r.info!.workerProtocols.oldestUntil).find((u) => u !== null);
    return { state: 'available', message: `An update is available: ${newer.map((r) => r.master).join(', ')} speaks worker protocol ${newer[0]!.info!.workerProtocols.newest}${until ? `; this version is accepted until ${until}` : ''}.` };
  }
  return { state: 'current', message: 'This version is current for every project joined.' };
}

/** A master's `GET /api/v1/version`, or null when it does not answer (older masters have none). */
export async function fetchVersionInfo(master: string): Promise<VersionInfo | null> {
  try {
    const res = await fetch(`${master}/api/v1/version`, { signal: AbortSignal.timeout(5000) });
    if (!res.ok) return null;
    const parsed = VersionInfoSchema.safeParse(await res.json());
    return parsed.success ? parsed.data : null;
  } catch {
    return null;
  }
}

/**
 * What needs the volunteer, one sentence each: an update is required, the disk is nearly full,
 * a joined project that the running agent no longer serves (its master refused this computer:
 * banned, or the token revoked).
 */
export function attentionItems(o: { update: UpdateNotice; freeBytes: number | null; status: AgentStatus | null; joined: readonly string[] }): string[] {
  const out: string[] = [];
  if (o.update.state === 'required') out.push(o.update.message);
  if (o.freeBytes !== null && o.freeBytes < DISK_NEARLY_FULL_BYTES) out.push(`The disk is nearly full: ${(o.freeBytes / 1024 ** 3).toFixed(1)} GiB free where builds run.`);
  if (o.status) {
    const served = new Set((o.status.projects ?? []).map((p) => p.name));
    for (const name of o.joined) if (!served.has(name)) out.push(`The project ${name} refused this computer (banned, or its token revoked); see Projects.`);
  }
  return out;
}
