import { href, type Route } from '../router';
import { HeaderFrame } from './header-frame';
import { ConnectionStatus } from './connection-status';

const LINKS = [
  { label: 'Builders', to: href.builders(), active: (r: Route) => r.page === 'builders' },
  { label: 'Grid', to: href.grid(), active: (r: Route) => r.page === 'grid' },
  { label: 'Builds', to: href.builds(), active: (r: Route) => r.page === 'builds' || r.page === 'build' },
  { label: 'Workers', to: href.workers(), active: (r: Route) => r.page === 'workers' },
  { label: 'Contributors', to: href.contributors(), active: (r: Route) => r.page === 'contributors' },
];

export function SiteHeader({ route }: { route: Route }) {
  return <HeaderFrame home={href.builders()} links={LINKS.map((l) => ({ label: l.label, to: l.to, current: l.active(route) }))} status={<ConnectionStatus />} />;
}
