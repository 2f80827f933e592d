import { useEffect, useRef } from 'react';
import { parseRoute, useHash } from '../router';
import { LoadErrorBanner } from './load-error-banner';
import { RoutePage } from './route-page';
import { SiteFooter } from './site-footer';
import { SiteHeader } from './site-header';
import { SkipLink } from './skip-link';
import { TokenDialog } from './token-dialog';

/** The whole dashboard: header, the page the hash names, footer and the token dialog. */
export function App() {
  const hash = useHash();
  const route = parseRoute(hash);
  const first = useRef(true);

  // After a navigation, move focus to the new page's heading so keyboard and screen-reader
  // users start at the top of what changed (not on the first load).
  useEffect(() => {
    if (first.current) { first.current = false; return; }
    document.querySelector<HTMLElement>('#main h1')?.focus();
    window.scrollTo(0, 0);
  }, [hash]);

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
