import { HeaderFrame } from '../components/header-frame';
import { agentHref, type AgentRoute } from './agent-router';
import { useAgent } from './agent-store';
import { STATE_LABEL } from './agent-state-label';

const LINKS = [
  { label: 'This computer', to: agentHref.overview(), active: (r: AgentRoute) => r.page === 'overview' },
  { label: 'Limits', to: agentHref.limits(), active: (r: AgentRoute) => r.page === 'limits' },
  { label: 'History', to: agentHref.history(), active: (r: AgentRoute) => r.page === 'history' || r.page === 'entry' },
  { label: 'Results by builder', to: agentHref.results(), active: (r: AgentRoute) => r.page === 'results' },
  { label: 'Projects', to: agentHref.projects(), active: (r: AgentRoute) => r.page === 'projects' },
  { label: 'What this computer gave', to: agentHref.gave(), active: (r: AgentRoute) => r.page === 'gave' },
];

export function AgentHeader({ route }: { route: AgentRoute }) {
  const state = useAgent((s) => s.status?.state ?? null);
  const error = useAgent((s) => s.statusError);
  const links = LINKS.map((l) => ({ label: l.label, to: l.to, current: l.active(route) }));
  // In the desktop app running (or pointed at) a master, its dashboard is one more page (a window of its own).
  const hasDashboard = useAgent((s) => (s.app?.dashboardUrl ?? null) !== null);
  if (hasDashboard) links.push({ label: 'Master dashboard', to: agentHref.dashboard(), current: route.page === 'dashboard' });
  const status = (
    <p className={`connection connection-${error ? 'reconnecting' : state ? 'open' : 'connecting'}`} role="status" aria-live="polite" title={error ?? undefined}>
      <span className="connection-dot" aria-hidden="true" />
      <span>{error ? 'Agent not answering' : state ? `Agent: ${STATE_LABEL[state]}` : 'Connecting…'}</span>
    </p>
  );
  return <HeaderFrame home={agentHref.overview()} links={links} status={status} />;
}
