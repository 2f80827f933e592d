import { useState } from 'react';
import type { InviteCreated, InviteView } from '../../../protocol/api.js';
import { formatTime } from '../format';
import { revokeInvite } from '../store/crowd-actions';
import { InviteForm } from './invite-form';
import { JoinLinkBox } from './join-link-box';
import { LabelList } from './label-list';

const STATE_LABEL = { active: 'Active', 'used-up': 'Used up', expired: 'Expired', revoked: 'Revoked' } as const;

/** Invitations (admin): make one, see its join link once, list them all, revoke. */
export function InvitesPanel({ invites }: { invites: readonly InviteView[] }) {
  const [created, setCreated] = useState<InviteCreated | null>(null);
  const [error, setError] = useState<string | null>(null);
  const revoke = async (id: string) => {
    setError(null);
    const r = await revokeInvite(id);
    if (!r.ok && !r.cancelled) setError(`Could not revoke invitation ${id}: ${r.error}`);
  };
  return (
    <section className="crowd-admin" aria-labelledby="invites-title">
      <h2 id="invites-title">Invitations</h2>
      <InviteForm onCreated={setCreated} />
      {created && <JoinLinkBox invite={created} />}
      {error && <p className="form-error" role="alert">{error}</p>}
      {invites.length === 0
        ? <p className="muted">No invitation yet. Workers that join with one get its labels and builds at once as their grants.</p>
        : (
          <div className="table-wrap">
            <table className="table invites-table">
              <caption className="sr-only">Invitations</caption>
              <thead><tr><th scope="col">Invitation</th><th scope="col">State</th><th scope="col" className="num">Uses left</th><th scope="col">Labels</th><th scope="col" className="num">Builds at once</th><th scope="col">Expires</th><th scope="col">Note</th><th scope="col"><span className="sr-only">Actions</span></th></tr></thead>
              <tbody>
                {invites.map((i) => (
                  <tr key={i.id}>
                    <th scope="row"><code>{i.id}</code></th>
                    <td><span className={`badge invite-${i.state}`}>{STATE_LABEL[i.state]}</span></td>
                    <td className="num">{i.usesLeft} / {i.maxUses}</td>
                    <td>{i.labels.length ? <LabelList labels={i.labels} /> : <span className="muted">none</span>}</td>
                    <td className="num">{i.maxBuilds}</td>
                    <td>{i.expiresAt ? formatTime(i.expiresAt) : <span className="muted">never</span>}</td>
                    <td>{i.note || <span className="muted">—</span>}</td>
                    <td>{i.state === 'active' && <button type="button" className="button-small button-danger" onClick={() => void revoke(i.id)}>Revoke<span className="sr-only"> invitation {i.id}</span></button>}</td>
                  </tr>
                ))}
              </tbody>
            </table>
          </div>
        )}
    </section>
  );
}
