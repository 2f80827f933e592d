import { StrictMode } from 'react';
import { createRoot } from 'react-dom/client';
import { startAgent } from './agent/agent-actions';
import { AgentApp } from './agent/agent-app';
import { App } from './components/app';
import { adoptPrefetched } from './first-load';
import { startDashboard } from './store/actions';
import { dashboard } from './store/store';

/** Resolves once the recent builds are in the store (or loading them failed). */
function buildsLoaded(): Promise<void> {
  const done = () => { const s = dashboard.getState(); return s.buildsLoaded || s.connection.loadError !== null; };
  if (done()) return Promise.resolve();
  return new Promise((resolve) => {
    const stop = dashboard.subscribe(() => { if (done()) { stop(); resolve(); } });
  });
}

/**
 * Runs the dashboard or, in the agent and the desktop app, the volunteer pages; called by
 * boot.ts (app.js) with the answers to the requests it sent, after the first paint it may have
 * made. The styles come with app.js (app.css).
 */
export function startApp(prefetched: ReadonlyMap<string, Promise<Response>>): void {
  const root = document.getElementById('root');
  if (!root) throw new Error('index.html has no #root element');
  // The same bundle serves the master's dashboard and, from a worker's local control API, the
  // volunteer pages; the agent marks its index.html with <meta name="crowdbake-mode" content="agent">.
  // The desktop app marks its window's page `app`: the same volunteer pages, through its bridge.
  const mode = document.querySelector('meta[name="crowdbake-mode"]')?.getAttribute('content');
  const agentMode = mode === 'agent' || mode === 'app';
  adoptPrefetched(prefetched);
  if (agentMode) startAgent(); else startDashboard();

  // React's first render replaces the rows boot.ts painted (first-rows.ts): with the builds
  // already in the store, it shows the same rows rather than "Loading builds…" in between.
  const ready = root.dataset.firstPaint === 'builds' ? buildsLoaded() : Promise.resolve();
  void ready.then(() => {
    delete root.dataset.firstPaint;
    createRoot(root).render(
      <StrictMode>
        {agentMode ? <AgentApp /> : <App />}
      </StrictMode>,
    );
  });
}
