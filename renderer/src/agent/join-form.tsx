import { useState, type FormEvent } from 'react';
import { joinProject } from './agent-actions';

/** A join link to paste; the reason in the page when the link or the master refuses. */
export function JoinForm({ initial = '', askName = false }: { initial?: string; askName?: boolean }) {
  const [link, setLink] = useState(initial);
  const [name, setName] = useState('');
  const [busy, setBusy] = useState(false);
  const [error, setError] = useState<string | null>(null);
  const [joined, setJoined] = useState<string | null>(null);
  const submit = async (e: FormEvent) => {
    e.preventDefault();
    setError(null);
    setJoined(null);
    if (!link.trim()) { setError('Paste the join link the project gave you (it starts with crowdbake://join).'); return; }
    setBusy(true);
    const r = await joinProject(link.trim(), name.trim() || undefined);
    setBusy(false);
    if (r.ok) { setJoined(r.project); setLink(''); } else setError(r.error);
  };
  return (
    <form className="join-form" onSubmit={(e) => void submit(e)} noValidate>
      <div className={`field${error ? ' field-invalid' : ''}`}>
        <label htmlFor="join-link">Join link</label>
        <input id="join-link" value={link} onChange={(e) => setLink(e.target.value)} placeholder="crowdbake://join?master=…" aria-describedby="join-link-hint" aria-invalid={error ? true : undefined} />
        <p className="hint" id="join-link-hint">From the project&apos;s page or its maintainer; a link on the web page opens the desktop app by itself.</p>
      </div>
      {askName && (
        <div className="field">
          <label htmlFor="join-name">Your name at the project (optional)</label>
          <input id="join-name" value={name} onChange={(e) => setName(e.target.value)} maxLength={64} />
        </div>
      )}
      {error && <p className="form-error" role="alert">Could not join: {error}</p>}
      {joined && <p role="status">Joined {joined}.</p>}
      <button type="submit" className="button-primary" disabled={busy}>{busy ? 'Joining…' : 'Join'}</button>
    </form>
  );
}
