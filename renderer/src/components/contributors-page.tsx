import { useEffect, useRef } from 'react';
import { href, navigate } from '../router';
import { loadContributors, loadVolunteerCredit } from '../store/crowd-actions';
import { FARM } from '../store/crowd-slice';
import { useDashboard } from '../store/hooks';
import { CapacityChart } from './charts/capacity-chart';
import { CreditCharts } from './charts/credit-charts';
import { ContributorsTable } from './contributors-table';
import { EarnedTrustRules } from './earned-trust-rules';
import { PageTitle } from './page-title';

/**
 * The Contributors page (`#/contributors[?volunteer=ID]`): what the volunteers gave, as
 * charts. Only what the public API shows: volunteers who asked not to be listed are not in
 * `GET /api/v1/volunteers` without the admin token, and this page never sends it. Their work
 * still counts in the farm's totals. Loaded lazily with uPlot (route-page.tsx).
 */
export function ContributorsPage({ volunteer }: { volunteer: string | null }) {
  const volunteers = useDashboard((s) => s.publicVolunteers);
  const enrollment = useDashboard((s) => s.enrollment);
  const capacity = useDashboard((s) => s.capacity);
  const error = useDashboard((s) => s.crowdError);
  const farm = useDashboard((s) => s.credit[FARM]);
  const mine = useDashboard((s) => (volunteer ? s.credit[volunteer] : undefined));
  const listed = volunteer ? volunteers?.find((v) => v.id === volunteer) ?? null : null;

  // Only a volunteer the public list holds: an unlisted one's days are the admin's to see.
  const listedId = listed?.id ?? null;
  useEffect(() => { void loadContributors(); }, []);
  useEffect(() => { if (listedId) void loadVolunteerCredit(listedId); }, [listedId]);
  useLiveReload(listedId);

  const loaded = volunteers !== null && enrollment !== null && capacity !== null && farm !== undefined;
  const unknown = volunteer !== null && volunteers !== null && !listed;
  return (
    <>
      <PageTitle extra={loaded && <p className="lede">{volunteers.length} volunteer{volunteers.length === 1 ? '' : 's'} listed on {enrollment.farm}</p>}>Contributors</PageTitle>
      {error && <p className="banner banner-error" role="alert">{error}</p>}
      {!loaded && !error && <p className="muted">Loading the contributors…</p>}
      {loaded && (
        <>
          <div className="contributors-pick">
            <label htmlFor="contributor-pick">Show</label>
            <select id="contributor-pick" value={listed ? listed.id : ''} onChange={(e) => navigate(href.contributors(e.target.value || null))}>
              <option value="">The whole farm</option>
              {volunteers.map((v) => <option key={v.id} value={v.id}>{v.displayName}</option>)}
            </select>
          </div>
          {unknown && <p className="banner banner-error" role="alert">No listed volunteer has the id {volunteer}; showing the whole farm.</p>}
          {listed && mine
            ? <CreditCharts days={mine} whose={listed.displayName} />
            : listed ? <p className="muted">Loading {listed.displayName}’s days…</p> : <CreditCharts days={farm} whose="The whole farm" />}
          <CapacityChart buckets={capacity} />
          <h2>Volunteers</h2>
          {volunteers.length === 0
            ? <div className="empty"><p>No volunteer is listed yet.</p><p className="muted">Volunteers who join and choose to be listed appear here with what they gave.</p></div>
            : <ContributorsTable volunteers={volunteers} selected={listed?.id ?? null} />}
          <EarnedTrustRules enrollment={enrollment} />
        </>
      )}
    </>
  );
}

/**
 * Reloads the page's data a second after builds finish (by then their credit is counted),
 * at most once a second however many finish.
 */
function useLiveReload(listedId: string | null): void {
  const finishedSeen = useDashboard((s) => s.finishedSeen);
  const atMount = useRef(finishedSeen);
  const volunteer = useRef(listedId);
  volunteer.current = listedId;
  const pending = useRef<ReturnType<typeof setTimeout> | null>(null);
  useEffect(() => {
    if (finishedSeen === atMount.current || pending.current) return;
    pending.current = setTimeout(() => {
      pending.current = null;
      void loadContributors();
      if (volunteer.current) void loadVolunteerCredit(volunteer.current);
    }, 1000);
  }, [finishedSeen]);
  useEffect(() => () => { if (pending.current) clearTimeout(pending.current); }, []);
}
