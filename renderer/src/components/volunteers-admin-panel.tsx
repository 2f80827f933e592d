import type { VolunteerView } from '../../../protocol/api.js';
import { VolunteerAdminRow } from './volunteer-admin-row';

/** Every volunteer (listed or not) with the admin's trust actions. */
export function VolunteersAdminPanel({ volunteers }: { volunteers: readonly VolunteerView[] }) {
  return (
    <section className="crowd-admin" aria-labelledby="volunteers-title">
      <h2 id="volunteers-title">Volunteers</h2>
      <p className="muted">Promote: trusted. Demote: new (also lifts a ban). Ban: their workers are disconnected within a second and refused from then on. Each change is recorded with its reason.</p>
      {volunteers.length === 0
        ? <p className="muted">No volunteer has joined yet.</p>
        : (
          <div className="table-wrap">
            <table className="table volunteers-admin-table">
              <caption className="sr-only">Volunteers and their trust</caption>
              <thead><tr><th scope="col">Volunteer</th><th scope="col">Trust</th><th scope="col">Workers</th><th scope="col" className="num">Builds</th><th scope="col" className="num">Streak</th><th scope="col">Change trust</th></tr></thead>
              <tbody>{volunteers.map((v) => <VolunteerAdminRow key={v.id} v={v} />)}</tbody>
            </table>
          </div>
        )}
    </section>
  );
}
