// The dashboard's hash routes, with no React: the first paint (first-rows.ts) reads them too.

/** Hash routes: `#/` builders, `#/grid`, `#/builds`, `#/builds/ID`, `#/workers`, `#/contributors[?volunteer=ID]`. */
export type Route =
  | { page: 'builders' }
  | { page: 'builds'; builder: string | null }
  | { page: 'build'; id: number }
  | { page: 'grid' }
  | { page: 'workers' }
  | { page: 'contributors'; volunteer: string | null }
  | { page: 'not-found'; path: string };

export function parseRoute(hash: string): Route {
  const raw = hash.replace(/^#/, '') || '/';
  const [path = '/', query = ''] = raw.split('?', 2);
  const parts = path.split('/').filter(Boolean);
  if (parts.length === 0) return { page: 'builders' };
  if (parts[0] === 'builds' && parts.length === 1) return { page: 'builds', builder: new URLSearchParams(query).get('builder') || null };
  if (parts[0] === 'builds' && parts.length === 2 && /^\d+$/.test(parts[1]!)) return { page: 'build', id: Number(parts[1]) };
  if (parts[0] === 'workers' && parts.length === 1) return { page: 'workers' };
  if (parts[0] === 'grid' && parts.length === 1) return { page: 'grid' };
  if (parts[0] === 'contributors' && parts.length === 1) return { page: 'contributors', volunteer: new URLSearchParams(query).get('volunteer') || null };
  return { page: 'not-found', path };
}

export const href = {
  builders: () => '#/',
  builds: (builder?: string | null) => (builder ? `#/builds?builder=${encodeURIComponent(builder)}` : '#/builds'),
  build: (id: number) => `#/builds/${id}`,
  workers: () => '#/workers',
  grid: () => '#/grid',
  contributors: (volunteer?: string | null) => (volunteer ? `#/contributors?volunteer=${encodeURIComponent(volunteer)}` : '#/contributors'),
};
