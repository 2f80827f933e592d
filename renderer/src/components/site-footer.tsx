import { forgetToken } from '../store/admin';
import { useHasAdminToken } from '../store/hooks';

export function SiteFooter() {
  const hasToken = useHasAdminToken();
  return (
    <footer className="site-footer">
      <span>Crowdbake build farm</span>
      <a href="/api/v1/builders">REST API</a>
      {hasToken && (
        <button type="button" className="link-button" onClick={forgetToken}>
          Forget the admin token
        </button>
      )}
    </footer>
  );
}
