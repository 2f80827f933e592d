import { useEffect, useState } from 'react';
import { loadAdminCrowd } from '../store/crowd-actions';
import { useDashboard, useHasAdminToken } from '../store/hooks';
import { InvitesPanel } from './invites-panel';
import { VolunteersAdminPanel } from './volunteers-admin-panel';

/**
 * The Workers page's admin part: invitations and volunteers' trust. Loaded at once when this
 * browser keeps the admin token; otherwise behind a button that asks for it.
 */
export function CrowdAdmin() {
  const invites = useDashboard((s) => s.invites);
  const volunteers = useDashboard((s) => s.adminVolunteers);
  const error = useDashboard((s) => s.adminError);
  const hasToken = useHasAdminToken();
  const [asking, setAsking] = useState(false);

  useEffect(() => { if (hasToken) void loadAdminCrowd(false); }, [hasToken]);

  if (!hasToken || invites === null || volunteers === null) {
    return (
      <section className="crowd-admin" aria-labelledby="crowd-admin-title">
        <h2 id="crowd-admin-title">Invitations and volunteers</h2>
        {error && <p className="form-error" role="alert">{error}</p>}
        <p className="muted">Inviting volunteers and changing their trust needs the master’s admin token.</p>
        <button type="button" disabled={asking} onClick={() => { setAsking(true); void loadAdminCrowd(true).finally(() => setAsking(false)); }}>
          Manage invitations and volunteers
        </button>
      </section>
    );
  }
  return (
    <>
      {error && <p className="form-error" role="alert">{error}</p>}
      <InvitesPanel invites={invites} />
      <VolunteersAdminPanel volunteers={volunteers} />
    </>
  );
}
