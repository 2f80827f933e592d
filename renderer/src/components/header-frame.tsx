import type { ReactNode } from 'react';
import { BrandMark } from './brand-mark';

export interface NavLink {
  label: string;
  to: string;
  current: boolean;
}

/** The bar at the top of every page (dashboard and volunteer pages): brand, main navigation, a status at the right. */
export function HeaderFrame({ home, links, status }: { home: string; links: readonly NavLink[]; status: ReactNode }) {
  return (
    <header className="site-header">
      <a className="brand" href={home}>
        <BrandMark />
        <span>Crowdbake</span>
      </a>
      <nav aria-label="Main">
        <ul className="nav-links">
          {links.map((l) => (
            <li key={l.to}>
              <a href={l.to} aria-current={l.current ? 'page' : undefined}>{l.label}</a>
            </li>
          ))}
        </ul>
      </nav>
      {status}
    </header>
  );
}
