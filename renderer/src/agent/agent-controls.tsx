import { useState } from 'react';
import { formatTime } from '../format';
import { finishThenPause, pause, resume, snooze, type Outcome } from './agent-actions';
import { useAgent } from './agent-store';

/** Pause, snooze for an hour, resume: what the volunteer most often wants. */
export function AgentControls() {
  const prefs = useAgent((s) => s.status?.preferences ?? null);
  const building = useAgent((s) => (s.status?.current.length ?? 0) > 0);
  const [busy, setBusy] = useState(false);
  const [error, setError] = useState<string | null>(null);
  if (!prefs) return null;
  const held = prefs.paused || prefs.snoozeUntil !== null;
  const run = async (what: () => Promise<Outcome>, label: string) => {
    setBusy(true);
    setError(null);
    const r = await what();
    setBusy(false);
    if (!r.ok) setError(`Could not ${label}: ${r.error}`);
  };
  return (
    <div className="actions">
      {held ? (
        <button type="button" className="button-primary" disabled={busy} onClick={() => void run(resume, 'resume')}>Resume builds</button>
      ) : (
        <>
          <button type="button" disabled={busy} onClick={() => void run(pause, 'pause')}>Pause builds</button>
          <button type="button" disabled={busy} onClick={() => void run(() => snooze('1h'), 'snooze')}>Snooze for 1 hour</button>
          {building && (prefs.pauseAfterCurrent
            ? <span className="muted">Pausing once the current build finishes</span>
            : <button type="button" disabled={busy} onClick={() => void run(finishThenPause, 'ask for a pause after this build')}>Finish this build, then pause</button>)}
        </>
      )}
      {prefs.snoozeUntil && <span className="muted">Snoozed until {formatTime(prefs.snoozeUntil)}</span>}
      {prefs.paused && <span className="muted">Paused until you resume</span>}
      {error && <p className="form-error" role="alert">{error}</p>}
    </div>
  );
}
