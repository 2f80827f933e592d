import { useState } from 'react';
import { navigate } from '../router';
import { rerun } from './agent-actions';
import { agentHref } from './agent-router';

/** Runs a local build again on this computer (same spec, outside the master) and opens it. */
export function RerunButton({ id, builder }: { id: number; builder: string }) {
  const [busy, setBusy] = useState(false);
  const [error, setError] = useState<string | null>(null);
  const go = async () => {
    setBusy(true);
    setError(null);
    const r = await rerun(id);
    setBusy(false);
    if (r.ok) navigate(agentHref.entry(r.id));
    else setError(r.error);
  };
  return (
    <span className="rerun">
      <button type="button" onClick={() => void go()} disabled={busy}>
        {busy ? 'Starting…' : 'Run again here'}<span className="sr-only"> ({builder}, from local build {id})</span>
      </button>
      {error && <span className="form-error" role="alert">Could not run it again: {error}</span>}
    </span>
  );
}
