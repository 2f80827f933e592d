import { useState } from 'react';
import type { BuildView } from '../../../protocol/api.js';
import { href, navigate } from '../router';
import { cancelBuild, rebuild } from '../store/actions';

type Busy = null | 'cancel' | 'rebuild';

/** Cancel (while queued, running or frozen) and Rebuild (same builder and revision). */
export function BuildActions({ build }: { build: BuildView }) {
  const [busy, setBusy] = useState<Busy>(null);
  const [error, setError] = useState<string | null>(null);
  const cancellable = build.state !== 'finished';

  const onCancel = async () => {
    setBusy('cancel');
    setError(null);
    const r = await cancelBuild(build.id);
    setBusy(null);
    if (!r.ok && !r.cancelled) setError(`Could not cancel build #${build.id}: ${r.error}`);
  };
  const onRebuild = async () => {
    setBusy('rebuild');
    setError(null);
    const r = await rebuild(build);
    setBusy(null);
    if (r.ok) navigate(href.build(r.value));
    else if (!r.cancelled) setError(`Could not rebuild: ${r.error}`);
  };

  return (
    <div className="actions">
      {cancellable && (
        <button type="button" className="button-danger" onClick={() => void onCancel()} disabled={busy !== null}>
          {busy === 'cancel' ? 'Cancelling…' : 'Cancel build'}
        </button>
      )}
      <button type="button" onClick={() => void onRebuild()} disabled={busy !== null}>
        {busy === 'rebuild' ? 'Queuing…' : 'Rebuild'}
      </button>
      {error && <p className="form-error" role="alert">{error}</p>}
    </div>
  );
}
