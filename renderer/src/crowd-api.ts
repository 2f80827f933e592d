import {
  CapacityBucketSchema, CreditDaySchema, EnrollmentViewSchema, InviteCreatedSchema, InviteViewSchema, VolunteerViewSchema,
  type CapacityBucketView, type CreditDayView, type EnrollmentView, type InviteCreated, type InviteView, type VolunteerView,
} from '../../protocol/api.js';
import { ApiError, getJson, request } from './api';

/**
 * The master's [crowd] REST routes (master/enrollment/routes.ts) for the browser: the public
 * reads behind the Contributors page, and the admin's invitations and trust changes behind
 * the Workers page. Answers are checked against protocol/api.ts like every other read.
 */

const bearer = (token: string): RequestInit => ({ headers: { authorization: `Bearer ${token}` } });
const VolunteerListSchema = VolunteerViewSchema.array();
const CreditSeriesSchema = CreditDaySchema.array();
const CapacitySchema = CapacityBucketSchema.array();
const InviteListSchema = InviteViewSchema.array();

export function fetchEnrollment(): Promise<EnrollmentView> {
  return getJson('/enrollment', EnrollmentViewSchema);
}

/**
 * Without a token: what the public sees (volunteers who asked not to be listed are left out
 * by the master). With the admin token: every volunteer, with workers and trust history.
 */
export function fetchVolunteers(adminToken?: string): Promise<VolunteerView[]> {
  return getJson('/volunteers', VolunteerListSchema, adminToken ? bearer(adminToken) : {});
}

/** The last 90 days, oldest first: of one volunteer, or (null) of the whole farm. */
export function fetchCredit(volunteerId: string | null): Promise<CreditDayView[]> {
  return getJson(volunteerId === null ? '/credit' : `/volunteers/${encodeURIComponent(volunteerId)}/credit`, CreditSeriesSchema);
}

export function fetchCapacity(): Promise<CapacityBucketView[]> {
  return getJson('/capacity', CapacitySchema);
}

export function fetchInvites(adminToken: string): Promise<InviteView[]> {
  return getJson('/invites', InviteListSchema, bearer(adminToken));
}

export interface InviteRequest {
  labels: string[];
  maxBuilds?: number;
  uses: number;
  expiresInMs?: number;
  note: string;
}

export async function createInvite(adminToken: string, body: InviteRequest): Promise<InviteCreated> {
  const res = await request('/invites', {
    method: 'POST',
    headers: { authorization: `Bearer ${adminToken}`, 'content-type': 'application/json' },
    body: JSON.stringify(body),
  });
  const parsed = InviteCreatedSchema.safeParse(await res.json());
  if (!parsed.success) throw new ApiError(res.status, 'the master did not answer with the new invitation');
  return parsed.data;
}

export async function revokeInvite(adminToken: string, id: string): Promise<void> {
  await request(`/invites/${encodeURIComponent(id)}`, { method: 'DELETE', headers: { authorization: `Bearer ${adminToken}` } });
}

export async function setTrust(adminToken: string, volunteerId: string, trust: VolunteerView['trust'], reason: string): Promise<void> {
  await request(`/volunteers/${encodeURIComponent(volunteerId)}/trust`, {
    method: 'POST',
    headers: { authorization: `Bearer ${adminToken}`, 'content-type': 'application/json' },
    body: JSON.stringify({ trust, reason }),
  });
}
