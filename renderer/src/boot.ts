import './styles.css';
import './agent/agent-app.css';
import { FIRST_LOAD, peekJson, prefetchedAnswers, prefetchFirstLoad } from './first-load';
import { paintFirstRows } from './first-rows';
import { formatTime } from './format';
import { parseRoute } from './routes';

/**
 * The bundle's entry (app.js), small on purpose: no React, no zod, no imports. On the master's
 * dashboard it sends the first requests at once (first-load.ts) and, on the Builds page, paints
 * the first rows from their answers (first-rows.ts); meanwhile the browser fetches the
 * dashboard's chunks (main.tsx and what it imports), which it runs next, handing over the
 * answers. The volunteer pages (agent, desktop app) go straight to main.tsx.
 */

/** The dashboard's chunks, main.tsx's first (filled in by scripts/build-renderer.mjs). */
declare const CROWDBAKE_DASHBOARD_CHUNKS: readonly string[];

const mode = document.querySelector('meta[name="crowdbake-mode"]')?.getAttribute('content');
const dashboardMode = mode !== 'agent' && mode !== 'app';
const root = document.getElementById('root');

/** Asks the browser to fetch (and compile) the dashboard's chunks now; they run on import. */
function preloadDashboard(): void {
  for (const url of CROWDBAKE_DASHBOARD_CHUNKS) {
    const link = document.createElement('link');
    link.rel = 'modulepreload';
    link.href = url;
    document.head.append(link);
  }
}

/** Resolves after the browser had a chance to paint what is in the DOM now. */
const afterPaint = () => new Promise<void>((resolve) => requestAnimationFrame(() => setTimeout(resolve, 0)));

async function firstPaint(): Promise<void> {
  const route = parseRoute(window.location.hash);
  if (!root || route.page !== 'builds' || route.builder !== null) return;
  const answers = Promise.all([peekJson(FIRST_LOAD.recent), peekJson(FIRST_LOAD.queued)]);
  // The first Intl.DateTimeFormat loads the locale's data (tens of ms): made while the answers travel.
  formatTime(new Date().toISOString());
  formatTime(new Date(0).toISOString());
  const [recent, queued] = await answers;
  // Running the dashboard's code takes a while: the rows go to the screen before it.
  if (paintFirstRows(root, recent, queued)) await afterPaint();
}

// The API requests first, the chunks after the first paint: fetching and compiling 400 KB of
// script would hold up both the answers (on HTTP/1.1's six connections) and the paint.
if (dashboardMode) prefetchFirstLoad();
void (dashboardMode ? firstPaint() : Promise.resolve())
  .catch((e: unknown) => console.warn('crowdbake dashboard: no first paint:', e))
  .then(() => {
    preloadDashboard();
    return import(CROWDBAKE_DASHBOARD_CHUNKS[0]!) as Promise<typeof import('./main')>;
  })
  .then((dashboard) => dashboard.startApp(prefetchedAnswers()))
  .catch((e: unknown) => {
    root?.replaceChildren(`The dashboard could not be loaded: ${e instanceof Error ? e.message : String(e)}`);
    throw e;
  });
