import { parseRoute, useHash } from '../router';
import { LoadErrorBanner } from './load-error-banner';
import { RoutePage } from './route-page';
import { SiteFooter } from './site-footer';
import { SiteHeader } from './site-header';
import { SkipLink } from './skip-link';
import { TokenDialog } from './token-dialog';
import { useFocusOnNavigate } from './use-focus-on-navigate';

/** The whole dashboard: header, the page the hash names, footer and the token dialog. */
export function App() {
  const hash = useHash();
  const route = parseRoute(hash);
  useFocusOnNavigate(hash);

  return (
    <>
      <SkipLink target="main" />
      <SiteHeader route={route} />
      <main id="main" tabIndex={-1}>
        <LoadErrorBanner />
        <RoutePage route={route} />
      </main>
      <SiteFooter />
      <TokenDialog />
    </>
  );
}
