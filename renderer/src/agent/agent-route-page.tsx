import { lazy, Suspense } from 'react';
import { NotFoundPage } from '../components/not-found-page';
import type { AgentRoute } from './agent-router';
import { HistoryPage } from './history-page';
import { LimitsPage } from './limits-page';
import { LocalBuildPage } from './local-build-page';
import { OverviewPage } from './overview-page';
import { ResultsPage } from './results-page';
import { ProjectsPage } from './projects-page';
import { DashboardPage } from './dashboard-page';

// Its chart library (uPlot) is a chunk of its own, fetched when the page is first opened, so
// no other page — nor the master's dashboard, which shares the bundle — waits for it.
const GavePage = lazy(() => import('./gave-page').then((m) => ({ default: m.GavePage })));

export function AgentRoutePage({ route }: { route: AgentRoute }) {
  switch (route.page) {
    case 'overview': return <OverviewPage />;
    case 'limits': return <LimitsPage />;
    case 'history': return <HistoryPage builder={route.builder} />;
    case 'entry': return <LocalBuildPage id={route.id} />;
    case 'results': return <ResultsPage />;
    case 'projects': return <ProjectsPage />;
    case 'gave': return <Suspense fallback={<p className="muted">Loading…</p>}><GavePage /></Suspense>;
    case 'dashboard': return <DashboardPage />;
    case 'not-found': return <NotFoundPage path={route.path} />;
  }
}
