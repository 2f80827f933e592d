import { useState, type FormEvent } from 'react';
import type { InviteCreated } from '../../../protocol/api.js';
import { createInvite } from '../store/crowd-actions';

const UNITS: Record<string, number> = { m: 60_000, h: 3_600_000, d: 86_400_000 };

/** "7d", "12h", "30m" → milliseconds; empty → never; null when it is not a duration. */
export function parseExpiry(text: string): number | undefined | null {
  const t = text.trim();
  if (!t) return undefined;
  const m = /^(\d+)\s*([mhd])$/.exec(t);
  if (!m || Number(m[1]) <= 0) return null;
  return Number(m[1]) * UNITS[m[2]!]!;
}

/** The form that makes an invitation (POST /api/v1/invites): labels, uses, expiry, builds at once, a note. */
export function InviteForm({ onCreated }: { onCreated: (invite: InviteCreated) => void }) {
  const [labels, setLabels] = useState('');
  const [uses, setUses] = useState('1');
  const [expires, setExpires] = useState('7d');
  const [maxBuilds, setMaxBuilds] = useState('4');
  const [note, setNote] = useState('');
  const [busy, setBusy] = useState(false);
  const [error, setError] = useState<string | null>(null);

  const submit = async (e: FormEvent) => {
    e.preventDefault();
    const expiresInMs = parseExpiry(expires);
    const n = Number(uses);
    const mb = Number(maxBuilds);
    if (expiresInMs === null) { setError(`Expires: "${expires}" is not a duration like 30m, 12h or 7d (empty: never).`); return; }
    if (!Number.isInteger(n) || n < 1) { setError(`Uses: "${uses}" is not a whole number of at least 1.`); return; }
    if (!Number.isInteger(mb) || mb < 1 || mb > 256) { setError(`Builds at once: "${maxBuilds}" is not a whole number from 1 to 256.`); return; }
    setBusy(true);
    setError(null);
    const r = await createInvite({
      labels: labels.split(',').map((l) => l.trim()).filter(Boolean), uses: n, maxBuilds: mb, note: note.trim(),
      ...(expiresInMs !== undefined ? { expiresInMs } : {}),
    });
    setBusy(false);
    if (r.ok) onCreated(r.value);
    else if (!r.cancelled) setError(`Could not create the invitation: ${r.error}`);
  };

  return (
    <form className="invite-form" onSubmit={(e) => void submit(e)} aria-label="New invitation">
      <div><label htmlFor="invite-labels">Labels (granted)</label><input id="invite-labels" value={labels} onChange={(e) => setLabels(e.target.value)} placeholder="linux, x64" /></div>
      <div><label htmlFor="invite-uses">Uses</label><input id="invite-uses" inputMode="numeric" value={uses} onChange={(e) => setUses(e.target.value)} /></div>
      <div><label htmlFor="invite-expires">Expires after</label><input id="invite-expires" value={expires} onChange={(e) => setExpires(e.target.value)} placeholder="never" /></div>
      <div><label htmlFor="invite-max-builds">Builds at once</label><input id="invite-max-builds" inputMode="numeric" value={maxBuilds} onChange={(e) => setMaxBuilds(e.target.value)} /></div>
      <div><label htmlFor="invite-note">Note</label><input id="invite-note" value={note} onChange={(e) => setNote(e.target.value)} placeholder="for the release sprint" /></div>
      <div><button type="submit" className="button-primary" disabled={busy}>{busy ? 'Creating…' : 'Create invitation'}</button></div>
      {error && <p className="form-error" role="alert">{error}</p>}
    </form>
  );
}
