import type { StateCreator } from 'zustand/vanilla';
import type { CapacityBucketView, CreditDayView, EnrollmentView, InviteView, VolunteerView } from '../../../protocol/api.js';
import type { DashboardState } from './store';

/** The farm's series in `credit` (the others are keyed by volunteer id). */
export const FARM = 'farm';

/**
 * [crowd] data: what the Contributors page shows to anyone (listed volunteers, credit per day,
 * capacity, the earned-trust rules) and what the Workers page shows the admin (every
 * volunteer with its trust history, the invitations). The two are kept apart on purpose: the
 * public page never renders a list fetched with the admin token, so an admin looking at it
 * sees what the public sees.
 */
export interface CrowdSlice {
  enrollment: EnrollmentView | null;
  /** Listed volunteers, as the public API answers; null until loaded. */
  publicVolunteers: VolunteerView[] | null;
  /** Per-day series, last 90 days: `credit[FARM]`, `credit[volunteerId]`. */
  credit: Record<string, CreditDayView[]>;
  capacity: CapacityBucketView[] | null;
  crowdError: string | null;

  /** Admin only: every volunteer (with workers and trust events) and every invitation. */
  adminVolunteers: VolunteerView[] | null;
  invites: InviteView[] | null;
  adminError: string | null;
  /** Counts builds seen finishing (events): the Contributors page reloads when it changes. */
  finishedSeen: number;

  setContributors(data: { enrollment: EnrollmentView; volunteers: VolunteerView[]; farm: CreditDayView[]; capacity: CapacityBucketView[] }): void;
  setCredit(key: string, series: CreditDayView[]): void;
  setCrowdError(error: string | null): void;
  setAdminCrowd(data: { volunteers: VolunteerView[]; invites: InviteView[] }): void;
  setAdminError(error: string | null): void;
  countFinished(): void;
}

export const createCrowdSlice: StateCreator<DashboardState, [], [], CrowdSlice> = (set, get) => ({
  enrollment: null,
  publicVolunteers: null,
  credit: {},
  capacity: null,
  crowdError: null,
  adminVolunteers: null,
  invites: null,
  adminError: null,
  finishedSeen: 0,
  setContributors: ({ enrollment, volunteers, farm, capacity }) => set({
    enrollment, publicVolunteers: volunteers, capacity, credit: { ...get().credit, [FARM]: farm }, crowdError: null,
  }),
  setCredit: (key, series) => set({ credit: { ...get().credit, [key]: series } }),
  setCrowdError: (crowdError) => set({ crowdError }),
  setAdminCrowd: ({ volunteers, invites }) => set({ adminVolunteers: volunteers, invites, adminError: null }),
  setAdminError: (adminError) => set({ adminError }),
  countFinished: () => set({ finishedSeen: get().finishedSeen + 1 }),
});
