import { useEffect, useRef } from 'react';
import { parseRoute, useHash, type Route } from '../router';
import { BuildPage } from './build-page';
import { BuildersPage } from './builders-page';
import { BuildsPage } from './builds-page';
import { LoadErrorBanner } from './load-error-banner';
import { NotFoundPage } from './not-found-page';
import { SiteFooter } from './site-footer';
import { SiteHeader } from './site-header';
import { SkipLink } from './skip-link';
import { TokenDialog } from './token-dialog';
import { WorkersPage } from './workers-page';

function Page({ route }: { route: Route }) {
  switch (route.page) {
    case 'builders': return <BuildersPage />;
    case 'builds': return <BuildsPage builder={route.builder} />;
    case 'build': return <BuildPage id={route.id} />;
    case 'workers': return <WorkersPage />;
    case 'not-found': return <NotFoundPage path={route.path} />;
  }
}

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
        <Page route={route} />
      </main>
      <SiteFooter />
      <TokenDialog />
    </>
  );
}
