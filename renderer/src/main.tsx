import './styles.css';
import { StrictMode } from 'react';
import { createRoot } from 'react-dom/client';
import { startAgent } from './agent/agent-actions';
import { AgentApp } from './agent/agent-app';
import { App } from './components/app';
import { startDashboard } from './store/actions';

const root = document.getElementById('root');
if (!root) throw new Error('index.html has no #root element');
// The same bundle serves the master's dashboard and, from a worker's local control API, the
// volunteer pages; the agent marks its index.html with <meta name="crowdbake-mode" content="agent">.
// The desktop app marks its window's page `app`: the same volunteer pages, through its bridge.
const mode = document.querySelector('meta[name="crowdbake-mode"]')?.getAttribute('content');
const agentMode = mode === 'agent' || mode === 'app';
if (agentMode) startAgent(); else startDashboard();
createRoot(root).render(
  <StrictMode>
    {agentMode ? <AgentApp /> : <App />}
  </StrictMode>,
);
