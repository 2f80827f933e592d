import { href, type Route } from '../router';
import { BrandMark } from './brand-mark';
import { ConnectionStatus } from './connection-status';

const LINKS = [
  { label: 'Builders', to: href.builders(), active: (r: Route) => r.page === 'builders' },
  { label: 'Grid', to: href.grid(), active: (r: Route) => r.page === 'grid' },
  { label: 'Builds', to: href.builds(), active: (r: Route) => r.page === 'builds' || r.page === 'build' },
  { label: 'Workers', to: href.workers(), active: (r: Route) => r.page === 'workers' },
];

export function SiteHeader({ route }: { route: Route }) {
  return (
    <header className="site-header">
      <a className="brand" href={href.builders()}>
        <BrandMark />
        <span>Crowdbake</span>
      </a>
      <nav aria-label="Main">
        <ul className="nav-links">
          {LINKS.map((l) => (
            <li key={l.to}>
              <a href={l.to} aria-current={l.active(route) ? 'page' : undefined}>{l.label}</a>
            </li>
          ))}
        </ul>
      </nav>
      <ConnectionStatus />
    </header>
  );
}
