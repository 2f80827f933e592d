import type { IncomingMessage, ServerResponse } from 'node:http';
import { deliveryId, WebhookDedupe, type ReplayGuard } from './webhook-dedupe.js';
import { loadForgeSecret } from './webhook-secret.js';
import { eventName, isProvider, parsePush, PROVIDERS, verifySignature, type Provider, type PushEvent } from './webhook-payload.js';

/** Push payloads are small; GitHub caps its own at 25 MB, but a push of a few commits is a few KiB. */
export const MAX_HOOK_BODY = 1024 * 1024;

export interface HookDeps {
  /** The old single secret (`CROWDBAKE_WEBHOOK_SECRET`, DATA/webhook.secret): still accepted for the HMAC forges (GitHub, Gitea), never for GitLab. */
  secret: string;
  /** Where the per-forge secrets and the replay memory live; without it, only `secret` (tests of the parsing alone). */
  dataDir?: string;
  /** Per-forge secrets instead of loading them from dataDir/the environment. */
  forgeSecrets?: Partial<Record<Provider, string>>;
  /** Replay protection shared by several masters (the farm's PostgreSQL); default: DATA/webhooks.json. */
  dedupe?: ReplayGuard;
  apply(push: PushEvent & { after: string }, via: Provider): Promise<unknown>;
}

/**
 * `POST /api/v1/hooks/{github|gitlab|gitea}`. The signature (or GitLab's token) is checked
 * before anything else is looked at. Answers: 401 bad or missing signature, 413 body over
 * 1 MiB, 400 malformed JSON or not a push payload, 202 for everything else — with
 * `{"queued": [...]}`, or `{"queued": [], "ignored": why}` for other events, tags and deletions.
 */
export async function handleHookRequest(provider: string, req: IncomingMessage, res: ServerResponse, deps: HookDeps): Promise<void> {
  if (!isProvider(provider)) return send(res, 404, { error: `no webhook for "${provider}"; use /api/v1/hooks/${PROVIDERS.join(', /api/v1/hooks/')}` });
  const body = await readBody(req, res);
  if (!body) return;
  const bad = verify(provider, req.headers, body, deps);
  if (bad) return send(res, 401, { error: bad });
  const delivery = deliveryId(provider, req.headers);
  const event = eventName(provider, req.headers);
  if (event !== 'push') return send(res, 202, { queued: [], ignored: event === null ? 'the request names no event' : `"${event}" is not a push event` });

  let json: unknown;
  try {
    json = JSON.parse(payloadText(req, body));
  } catch (e) {
    return send(res, 400, { error: `request body is not JSON: ${(e as Error).message}` });
  }
  const push = parsePush(provider, json);
  if (typeof push === 'string') return send(res, 400, { error: push });
  if (!push.ref.startsWith('refs/heads/')) return send(res, 202, { queued: [], ignored: `${push.ref} is not a branch` });
  if (push.after === null) return send(res, 202, { queued: [], ignored: `${push.ref} was deleted` });
  const replay = await (deps.dedupe ?? dedupeOf(deps))?.check(delivery, { repoUrls: push.repoUrls, ref: push.ref, after: push.after }) ?? null;
  if (replay) return send(res, 409, { queued: [], error: replay });
  return send(res, 202, await deps.apply({ ...push, after: push.after }, provider));
}

const dedupes = new Map<string, WebhookDedupe>();
function dedupeOf(deps: HookDeps): WebhookDedupe | null {
  if (!deps.dataDir) return null;
  let d = dedupes.get(deps.dataDir);
  if (!d) dedupes.set(deps.dataDir, (d = new WebhookDedupe(deps.dataDir)));
  return d;
}

/**
 * The request is signed with this forge's own secret; for GitHub and Gitea the old shared
 * secret still works (compatibility: it is only ever used as an HMAC key, never sent). GitLab
 * sends its token in plain, so it has its own and the shared one is refused for it: a seen
 * GitLab token cannot sign a GitHub or Gitea push, nor the other way round.
 */
function verify(provider: Provider, headers: IncomingMessage['headers'], body: Buffer, deps: HookDeps): string | null {
  const own = deps.forgeSecrets?.[provider] ?? (deps.dataDir ? loadForgeSecret(deps.dataDir, provider) : undefined);
  const candidates = provider === 'gitlab' && own !== undefined ? [own] : [...(own !== undefined ? [own] : []), deps.secret];
  let first: string | null = null;
  for (const secret of candidates) {
    const bad = verifySignature(provider, headers, body, secret);
    if (bad === null) return null;
    first ??= bad;
  }
  if (provider === 'gitlab' && own !== undefined && first !== null && !first.startsWith('missing')) {
    return `${first} (GitLab has its own secret: DATA/webhook-gitlab.secret or $CROWDBAKE_WEBHOOK_SECRET_GITLAB)`;
  }
  return first;
}

/** The JSON text: the body itself, or GitHub's `payload=` form field when the hook sends form data. */
function payloadText(req: IncomingMessage, body: Buffer): string {
  const text = body.toString('utf8');
  if (!/^application\/x-www-form-urlencoded\b/i.test(req.headers['content-type'] ?? '')) return text;
  return new URLSearchParams(text).get('payload') ?? '';
}

/** The whole body, or null after answering 413 when it is over the limit. */
async function readBody(req: IncomingMessage, res: ServerResponse): Promise<Buffer | null> {
  const tooBig = (): null => {
    res.setHeader('connection', 'close');
    send(res, 413, { error: `request body exceeds ${MAX_HOOK_BODY} bytes` });
    res.on('finish', () => req.destroy());
    return null;
  };
  if (Number(req.headers['content-length'] ?? 0) > MAX_HOOK_BODY) return tooBig();
  // Events rather than `for await`: leaving that loop early would destroy the socket before the 413 is sent.
  return new Promise((ok, fail) => {
    const chunks: Buffer[] = [];
    let size = 0;
    let settled = false;
    req.on('data', (c: Buffer) => {
      if (settled) return;
      size += c.length;
      if (size <= MAX_HOOK_BODY) { chunks.push(c); return; }
      settled = true;
      ok(tooBig());
    });
    req.on('end', () => { if (!settled) { settled = true; ok(Buffer.concat(chunks)); } });
    req.on('error', (e) => { if (!settled) { settled = true; fail(e); } });
  });
}

function send(res: ServerResponse, status: number, body: unknown): void {
  const text = JSON.stringify(body);
  res.writeHead(status, { 'content-type': 'application/json; charset=utf-8', 'content-length': Buffer.byteLength(text) });
  res.end(text);
}
