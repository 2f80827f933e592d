import * as z from 'zod';

/**
 * [cloud] Watches the instance metadata service for a spot interruption notice, as AWS
 * documents it (IMDSv2): `PUT /latest/api/token` for a session token, then
 * `GET /latest/meta-data/spot/instance-action` — 404 while there is none, `{"action", "time"}`
 * about two minutes before the instance is stopped or terminated.
 *
 * The URL comes from the worker's command line (the cloud provisioner's user-data writes it;
 * tests point it at a loopback stand-in). What the service answers is only read as "a notice
 * or not": a capped body, parsed by a schema, whose action and time go into a log line; the
 * worker's answer to a notice is to drain, which gives work back and runs nothing.
 */
export function watchInterruption(baseUrl: string, onNotice: (what: string) => void, log: (line: string) => void, everyMs = 2000): { stop(): void } {
  const base = baseUrl.replace(/\/+$/, '');
  let stopped = false;
  let warned = false;
  let timer: NodeJS.Timeout | null = null;
  const poll = async () => {
    try {
      const notice = await interruptionNotice(base);
      if (notice !== null && !stopped) {
        stopped = true;
        onNotice(notice);
        return;
      }
      warned = false;
    } catch (e) {
      if (!warned) log(`interruption notices: cannot ask ${base}: ${(e as Error).message} (asking again)`);
      warned = true;
    }
    if (!stopped) { timer = setTimeout(() => void poll(), everyMs); timer.unref(); }
  };
  void poll();
  return { stop: () => { stopped = true; if (timer) clearTimeout(timer); } };
}

const NoticeSchema = z.object({ action: z.string().max(50), time: z.string().max(100).optional() });
const MAX_BODY = 4096;

/** The notice ("terminate at 2026-…"), or null when there is none. Throws when the service cannot be asked. */
export async function interruptionNotice(base: string): Promise<string | null> {
  const signal = AbortSignal.timeout(5000);
  const t = await fetch(`${base}/latest/api/token`, { method: 'PUT', headers: { 'x-aws-ec2-metadata-token-ttl-seconds': '300' }, signal, redirect: 'error' });
  if (!t.ok) throw new Error(`token: HTTP ${t.status}`);
  const token = (await t.text()).slice(0, MAX_BODY).trim();
  const r = await fetch(`${base}/latest/meta-data/spot/instance-action`, { headers: { 'x-aws-ec2-metadata-token': token }, signal, redirect: 'error' });
  if (r.status === 404) { await r.body?.cancel(); return null; }
  if (!r.ok) throw new Error(`instance-action: HTTP ${r.status}`);
  const text = (await r.text()).slice(0, MAX_BODY);
  let parsed: z.infer<typeof NoticeSchema>;
  try {
    parsed = NoticeSchema.parse(JSON.parse(text));
  } catch {
    throw new Error('instance-action: not a notice ({"action", "time"})');
  }
  return `${parsed.action}${parsed.time ? ` at ${parsed.time}` : ''}`;
}
