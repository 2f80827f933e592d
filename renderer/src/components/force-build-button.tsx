import { useState } from 'react';
import { href } from '../router';
import { forceBuild } from '../store/actions';

type Outcome = { kind: 'idle' } | { kind: 'busy' } | { kind: 'queued'; id: number } | { kind: 'error'; text: string };

/** "Force build": asks for the admin token if none is kept, then queues a build and links to it. */
export function ForceBuildButton({ builder }: { builder: string }) {
  const [outcome, setOutcome] = useState<Outcome>({ kind: 'idle' });
  const onClick = async () => {
    setOutcome({ kind: 'busy' });
    const r = await forceBuild(builder);
    if (r.ok) setOutcome({ kind: 'queued', id: r.value });
    else setOutcome(r.cancelled ? { kind: 'idle' } : { kind: 'error', text: `Could not force a build: ${r.error}` });
  };
  return (
    <div className="force-build">
      <button type="button" className="button-primary" onClick={() => void onClick()} disabled={outcome.kind === 'busy'}>
        Force build<span className="sr-only"> of {builder}</span>
      </button>
      <div className="force-outcome" role="status">
        {outcome.kind === 'queued' && (
          <span>Queued <a href={href.build(outcome.id)}>build #{outcome.id}</a></span>
        )}
      </div>
      {outcome.kind === 'error' && <p className="form-error" role="alert">{outcome.text}</p>}
    </div>
  );
}
