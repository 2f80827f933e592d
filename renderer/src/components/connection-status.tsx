import { useConnection } from '../store/hooks';

/** The live connection to the master, announced politely to screen readers when it changes. */
export function ConnectionStatus() {
  const c = useConnection();
  let text: string;
  if (c.status === 'open') text = 'Live';
  else if (c.status === 'connecting') text = 'Connecting…';
  else if (c.retryInMs !== null) text = `Offline — retrying in ${Math.max(1, Math.round(c.retryInMs / 1000))} s`;
  else text = 'Reconnecting…';
  return (
    <p className={`connection connection-${c.status}`} role="status" aria-live="polite" title={c.error ?? undefined}>
      <span className="connection-dot" aria-hidden="true" />
      <span>{text}</span>
    </p>
  );
}
