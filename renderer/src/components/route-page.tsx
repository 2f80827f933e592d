import { lazy, Suspense } from 'react';
import type { Route } from '../router';
import { BuildPage } from './build-page';
import { BuildersPage } from './builders-page';
import { BuildsPage } from './builds-page';
import { GridPage } from './grid-page';
import { LazyPageBoundary } from './lazy-page-boundary';
import { NotFoundPage } from './not-found-page';
import { WorkersPage } from './workers-page';

// Loaded when first opened (its own chunk, with the chart library): the first paint of every
// other page does not wait for it.
const ContributorsPage = lazy(() => import('./contributors-page').then((m) => ({ default: m.ContributorsPage })));

/** The page a route names. */
export function RoutePage({ route }: { route: Route }) {
  switch (route.page) {
    case 'builders': return <BuildersPage />;
    case 'builds': return <BuildsPage builder={route.builder} />;
    case 'build': return <BuildPage id={route.id} />;
    case 'workers': return <WorkersPage />;
    case 'grid': return <GridPage />;
    case 'contributors': return (
      <LazyPageBoundary>
        <Suspense fallback={<p className="muted">Loading the contributors page…</p>}>
          <ContributorsPage volunteer={route.volunteer} />
        </Suspense>
      </LazyPageBoundary>
    );
    case 'not-found': return <NotFoundPage path={route.path} />;
  }
}
