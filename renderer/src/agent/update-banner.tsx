import { useAgent } from './agent-store';

/** In the desktop app: an update the masters of the joined projects ask for (available, or required). */
export function UpdateBanner() {
  const update = useAgent((s) => s.app?.update ?? null);
  if (!update || update.state === 'current') return null;
  return <div className={`banner ${update.state === 'required' ? 'banner-error' : 'banner-info'}`} role={update.state === 'required' ? 'alert' : 'status'}>{update.message}</div>;
}
