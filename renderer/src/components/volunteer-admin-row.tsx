import { useState } from 'react';
import type { VolunteerView } from '../../../protocol/api.js';
import { changeTrust } from '../store/crowd-actions';
import { formatHours, formatTime, msToHours as hours } from '../format';

const TRUST_LABEL = { new: 'New', trusted: 'Trusted', banned: 'Banned' } as const;
const SOURCE_LABEL: Record<string, string> = { join: 'on joining', maintainer: 'by a maintainer', earned: 'earned' };
type Trust = VolunteerView['trust'];
const ACTIONS: { trust: Trust; label: string; danger?: boolean }[] = [
  { trust: 'trusted', label: 'Promote' },
  { trust: 'new', label: 'Demote' },
  { trust: 'banned', label: 'Ban', danger: true },
];

/** One volunteer for the admin: trust and where it came from, workers, streak, the trust actions with a reason, and the history of changes. */
export function VolunteerAdminRow({ v }: { v: VolunteerView }) {
  const [reason, setReason] = useState('');
  const [busy, setBusy] = useState(false);
  const [error, setError] = useState<string | null>(null);
  const act = async (trust: Trust) => {
    setBusy(true);
    setError(null);
    const r = await changeTrust(v, trust, reason.trim() || 'set from the dashboard');
    setBusy(false);
    if (r.ok) setReason('');
    else if (!r.cancelled) setError(`Could not change ${v.displayName}’s trust: ${r.error}`);
  };
  const events = [...(v.trustEvents ?? [])].reverse();
  const reasonId = `trust-reason-${v.id}`;
  return (
    <tr>
      <th scope="row">
        {v.displayName}
        <div className="muted small"><code>{v.id}</code>{v.listed === false && ' · not listed publicly'}</div>
      </th>
      <td>
        <span className={`badge trust-${v.trust}`}>{TRUST_LABEL[v.trust]}</span>
        {v.trustSource && <div className="muted small">{SOURCE_LABEL[v.trustSource] ?? v.trustSource}</div>}
      </td>
      <td>{v.workers?.length ? v.workers.map((w) => w.name + (w.revoked ? ' (revoked)' : '')).join(', ') : <span className="muted">none</span>}</td>
      <td className="num">{v.credit.builds} · {formatHours(hours(v.credit.cpuMs))} CPU h</td>
      <td className="num">{v.streak ?? 0}</td>
      <td>
        <div className="trust-actions">
          <label htmlFor={reasonId} className="sr-only">Reason for changing {v.displayName}’s trust</label>
          <input id={reasonId} value={reason} onChange={(e) => setReason(e.target.value)} placeholder="reason (recorded)" maxLength={500} />
          {ACTIONS.filter((a) => a.trust !== v.trust).map((a) => (
            <button key={a.trust} type="button" className={`button-small${a.danger ? ' button-danger' : ''}`} disabled={busy} onClick={() => void act(a.trust)}>
              {a.label}<span className="sr-only"> {v.displayName}</span>
            </button>
          ))}
        </div>
        {error && <p className="form-error" role="alert">{error}</p>}
        {events.length > 0 && (
          <ol className="trust-history" aria-label={`Trust history of ${v.displayName}`}>
            {events.map((e, i) => (
              <li key={`${e.at}-${i}`}>
                {formatTime(e.at)}: {e.previous ? `${TRUST_LABEL[e.previous]} → ` : ''}{TRUST_LABEL[e.trust]} ({SOURCE_LABEL[e.source] ?? e.source}) — {e.reason}
              </li>
            ))}
          </ol>
        )}
      </td>
    </tr>
  );
}
