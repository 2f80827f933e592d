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

/** The most of a version answer read (a real one is about 200 bytes). */
export const VERSION_BODY_MAX_BYTES = 16 * 1024;
/** How long a version fetch may take, body included. */
export const VERSION_FETCH_TIMEOUT_MS = 5000;

/**
 * A master's `GET /api/v1/version`, or null when it does not answer as it should (older
 * masters have none). The answer comes from a master (or whoever holds its address), read in
 * the app's main process: no redirect is followed (it could send main anywhere), at most
 * VERSION_BODY_MAX_BYTES are read, and the whole exchange is cut after VERSION_FETCH_TIMEOUT_MS;
 * then it is only parsed with its schema.
 */
export async function fetchVersionInfo(master: string, timeoutMs = VERSION_FETCH_TIMEOUT_MS): Promise<VersionInfo | null> {
  const controller = new AbortController();
  const timer = setTimeout(() => controller.abort(), timeoutMs);
  try {
    const res = await fetch(`${master}/api/v1/version`, { signal: controller.signal, redirect: 'error' });
    if (!res.ok || !res.body) return null;
    const declared = Number(res.headers.get('content-length') ?? '0');
    if (declared > VERSION_BODY_MAX_BYTES) return null;
    const chunks: Uint8Array[] = [];
    let size = 0;
    for await (const chunk of res.body) {
      size += chunk.byteLength;
      if (size > VERSION_BODY_MAX_BYTES) return null;
      chunks.push(chunk);
    }
    const parsed = VersionInfoSchema.safeParse(JSON.parse(Buffer.concat(chunks).toString('utf8')));
    return parsed.success ? parsed.data : null;
  } catch {
    return null;
  } finally {
    clearTimeout(timer);
    controller.abort();
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
