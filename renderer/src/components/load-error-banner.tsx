import { useDashboard } from '../store/hooks';
import { refreshAll } from '../store/actions';

export function LoadErrorBanner() {
  const error = useDashboard((s) => s.connection.loadError);
  if (!error) return null;
  return (
    <div className="banner banner-error" role="alert">
      <span>{error}</span>
      <button type="button" className="button-small" onClick={() => void refreshAll()}>Try again</button>
    </div>
  );
}
