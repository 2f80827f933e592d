import type { IncomingMessage, ServerResponse } from 'node:http';
import {
  InviteCreateRequestSchema, TrustChangeRequestSchema, type InviteCreated, type VolunteerView,
} from '../../protocol/api.js';
import { describeIssues } from '../../protocol/parse.js';
import { Credit, ZERO_CREDIT } from '../credit.js';
import { HttpError, sendJson } from '../http-api.js';
import type { Store } from '../store/store.js';
import type { Volunteers } from '../volunteers.js';
import { createInvite, inviteView, joinLinkFor, type FarmInfo } from './invites.js';
import type { Enrollment } from './join.js';

const MAX_BODY = 64 * 1024;

/**
 * The [crowd] REST routes:
 *   POST   /api/v1/join                     a volunteer's worker joins (protocol/join.ts)
 *   GET    /api/v1/enrollment               the mode, the farm's name, its public link when open
 *   GET    /api/v1/invites                  (admin) every invite, never its code
 *   POST   /api/v1/invites                  (admin) a new invite; the answer holds its link, once
 *   DELETE /api/v1/invites/ID               (admin) revoke
 *   GET    /api/v1/volunteers               listed volunteers, trust, credit; the admin sees all, with workers and trust history
 *   GET    /api/v1/volunteers/ID/credit     per-day credit, last 90 days
 *   POST   /api/v1/volunteers/ID/trust      (admin) { trust, reason }
 *   GET    /api/v1/credit                   the farm's per-day credit, last 90 days
 *   GET    /api/v1/capacity                 accepting workers by hour of the week (168 buckets)
 */
export class EnrollmentRoutes {
  constructor(private readonly deps: { store: Store; enrollment: Enrollment; volunteers: Volunteers; credit: Credit; farm: () => FarmInfo }) {}

  /** Answers the request when it is one of these routes; false otherwise. `requireAdmin` throws unless the admin token came with it. */
  async handle(req: IncomingMessage, res: ServerResponse, url: URL, requireAdmin: () => void): Promise<boolean> {
    const path = url.pathname;
    const method = req.method ?? 'GET';
    const d = this.deps;
    let m: RegExpExecArray | null;
    if (path === '/api/v1/join' && method === 'POST') {
      const r = await d.enrollment.join(await readJson(req), req.socket.remoteAddress ?? 'unknown');
      if (r.ok) sendJson(res, 201, r.body);
      else sendJson(res, r.status, { error: r.error, ...(r.reason ? { reason: r.reason } : {}) });
      return true;
    }
    if (path === '/api/v1/enrollment' && method === 'GET') {
      const farm = d.farm();
      sendJson(res, 200, { mode: d.enrollment.mode, farm: farm.name, promoteAfter: d.volunteers.promoteAfter, fewerReplicasAfter: d.volunteers.fewerReplicasAfter, ...(d.enrollment.mode === 'open' ? { link: joinLinkFor(farm) } : {}) });
      return true;
    }
    if (path === '/api/v1/invites' && method === 'GET') {
      requireAdmin();
      sendJson(res, 200, (await d.store.listInvites()).map((i) => inviteView(i)));
      return true;
    }
    if (path === '/api/v1/invites' && method === 'POST') {
      requireAdmin();
      const body = InviteCreateRequestSchema.safeParse(await readJson(req));
      if (!body.success) throw new HttpError(400, `bad request body: ${describeIssues(body.error)}`);
      const { labels, maxBuilds, uses, expiresInMs, note } = body.data;
      let made;
      try {
        made = await createInvite(d.store, { labels, maxBuilds, uses, note, ...(expiresInMs !== undefined ? { expiresInMs } : {}) });
      } catch (e) {
        throw new HttpError(400, (e as Error).message);
      }
      const out: InviteCreated = { ...inviteView(made.row), code: made.code, link: joinLinkFor(d.farm(), made.code) };
      sendJson(res, 201, out);
      return true;
    }
    if ((m = /^\/api\/v1\/invites\/([^/]+)$/.exec(path)) && method === 'DELETE') {
      requireAdmin();
      const id = decodeURIComponent(m[1]!);
      if (!(await d.store.revokeInvite(id, new Date().toISOString()))) throw new HttpError(404, `no active invite ${id}`);
      sendJson(res, 200, { id, revoked: true });
      return true;
    }
    if (path === '/api/v1/volunteers' && method === 'GET') {
      const admin = isAdmin(req, requireAdmin);
      sendJson(res, 200, await volunteerViews(d.store, d.credit, admin));
      return true;
    }
    if ((m = /^\/api\/v1\/volunteers\/([^/]+)\/credit$/.exec(path)) && method === 'GET') {
      const v = await d.store.getVolunteer(decodeURIComponent(m[1]!));
      // An unlisted volunteer's record is the admin's to see only.
      if (!v || (!v.listed && !isAdmin(req, requireAdmin))) throw new HttpError(404, `no volunteer ${decodeURIComponent(m[1]!)}`);
      sendJson(res, 200, await d.credit.series(v.id));
      return true;
    }
    if ((m = /^\/api\/v1\/volunteers\/([^/]+)\/trust$/.exec(path)) && method === 'POST') {
      requireAdmin();
      const id = decodeURIComponent(m[1]!);
      const body = TrustChangeRequestSchema.safeParse(await readJson(req));
      if (!body.success) throw new HttpError(400, `bad request body: ${describeIssues(body.error)}`);
      if (!(await d.store.getVolunteer(id))) throw new HttpError(404, `no volunteer ${id}`);
      const v = await d.volunteers.setTrust(id, body.data.trust, body.data.reason);
      sendJson(res, 200, { id: v.id, displayName: v.displayName, trust: v.trust });
      return true;
    }
    if (path === '/api/v1/credit' && method === 'GET') {
      sendJson(res, 200, await d.credit.series(null));
      return true;
    }
    if (path === '/api/v1/capacity' && method === 'GET') {
      sendJson(res, 200, await d.credit.capacity());
      return true;
    }
    return false;
  }
}

/** With an Authorization header: the admin (a wrong token is refused); without: the public. */
function isAdmin(req: IncomingMessage, requireAdmin: () => void): boolean {
  if (!req.headers.authorization) return false;
  requireAdmin();
  return true;
}

/** `GET /api/v1/volunteers`: the public sees listed volunteers only, without keys, workers or history. */
export async function volunteerViews(store: Store, credit: Credit, admin: boolean): Promise<VolunteerView[]> {
  const totals = await credit.totals();
  const tokens = admin ? await store.listTokens() : [];
  const out: VolunteerView[] = [];
  for (const v of await store.listVolunteers()) {
    if (!admin && !v.listed) continue;
    const view: VolunteerView = { id: v.id, displayName: v.displayName, trust: v.trust, credit: totals.volunteers.get(v.id) ?? ZERO_CREDIT };
    if (admin) {
      Object.assign(view, {
        listed: v.listed, trustSource: v.trustSource, streak: v.streak, createdAt: v.createdAt,
        workers: tokens.filter((t) => t.volunteerId === v.id).map((t) => {
          const { volunteerId: _v, ...counts } = totals.workers.get(t.name) ?? { ...ZERO_CREDIT, volunteerId: null };
          return { name: t.name, revoked: t.revokedAt !== null, credit: counts };
        }),
        trustEvents: (await store.listTrustEvents(v.id)).map(({ trust, previous, source, reason, at }) => ({ trust, previous, source, reason, at })),
      });
    }
    out.push(view);
  }
  return out;
}

async function readJson(req: IncomingMessage): Promise<unknown> {
  const chunks: Buffer[] = [];
  let size = 0;
  for await (const c of req) {
    size += (c as Buffer).length;
    if (size > MAX_BODY) throw new HttpError(413, `request body exceeds ${MAX_BODY} bytes`);
    chunks.push(c as Buffer);
  }
  const text = Buffer.concat(chunks).toString('utf8').trim();
  if (!text) return {};
  try { return JSON.parse(text); } catch (e) { throw new HttpError(400, `request body is not JSON: ${(e as Error).message}`); }
}
