import type { InviteCreated, VolunteerView } from '../../../protocol/api.js';
import { ApiError } from '../api';
import * as crowd from '../crowd-api';
import { loadAdminToken } from '../admin-token';
import { write, type WriteOutcome } from './actions';
import { forgetToken, withAdminToken } from './admin';
import { dashboard } from './store';

/**
 * [crowd] actions: the Contributors page's public reads, and the admin's invitations and
 * trust changes on the Workers page. Plain functions like actions.ts, writing the store.
 */

const state = () => dashboard.getState();
const message = (e: unknown) => (e instanceof Error ? e.message : String(e));

/** Loads the Contributors page: the rules, listed volunteers, the farm's 90 days and its week of capacity. */
export async function loadContributors(): Promise<void> {
  try {
    const [enrollment, volunteers, farm, capacity] = await Promise.all([
      crowd.fetchEnrollment(), crowd.fetchVolunteers(), crowd.fetchCredit(null), crowd.fetchCapacity(),
    ]);
    state().setContributors({ enrollment, volunteers, farm, capacity });
  } catch (e) {
    state().setCrowdError(`Could not load the contributors: ${message(e)}`);
  }
}

/** Loads one listed volunteer's 90 days. */
export async function loadVolunteerCredit(id: string): Promise<void> {
  try {
    state().setCredit(id, await crowd.fetchCredit(id));
  } catch (e) {
    state().setCrowdError(`Could not load this volunteer's credit: ${message(e)}`);
  }
}

/**
 * Loads every volunteer and invitation for the admin. With `ask` false it only uses a token
 * this browser kept, and never opens the dialog (the Workers page opens without a prompt; a
 * kept token the master refuses is forgotten). Resolves false when nothing was loaded.
 */
export async function loadAdminCrowd(ask: boolean): Promise<boolean> {
  const load = (token: string) => Promise.all([crowd.fetchVolunteers(token), crowd.fetchInvites(token)]);
  try {
    let got: Awaited<ReturnType<typeof load>> | null;
    if (ask) {
      got = (await withAdminToken('manage invitations and volunteers', load))?.value ?? null;
    } else {
      const token = loadAdminToken();
      got = token ? await load(token) : null;
    }
    if (!got) return false;
    state().setAdminCrowd({ volunteers: got[0], invites: got[1] });
    return true;
  } catch (e) {
    if (!ask && e instanceof ApiError && e.isAuth) { forgetToken(); return false; }
    state().setAdminError(`Could not load invitations and volunteers: ${message(e)}`);
    return false;
  }
}

async function reloadAdmin(): Promise<void> {
  await loadAdminCrowd(false);
}

/** Makes an invitation; its link is in the answer (the master shows it this once). */
export async function createInvite(body: crowd.InviteRequest): Promise<WriteOutcome<InviteCreated>> {
  const out = await write('create an invitation', (token) => crowd.createInvite(token, body));
  if (out.ok) await reloadAdmin();
  return out;
}

export async function revokeInvite(id: string): Promise<WriteOutcome<void>> {
  const out = await write(`revoke invitation ${id}`, (token) => crowd.revokeInvite(token, id));
  if (out.ok) await reloadAdmin();
  return out;
}

/** promote → trusted, demote → new, ban → banned; the master records `reason` with the change. */
export async function changeTrust(v: Pick<VolunteerView, 'id' | 'displayName'>, trust: VolunteerView['trust'], reason: string): Promise<WriteOutcome<void>> {
  const out = await write(`change the trust of ${v.displayName}`, (token) => crowd.setTrust(token, v.id, trust, reason));
  if (out.ok) await Promise.all([reloadAdmin(), loadContributors()]);
  return out;
}
