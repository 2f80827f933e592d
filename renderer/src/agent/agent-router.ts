/** Hash routes of the volunteer pages: `#/` this computer, `#/limits`, `#/history`, `#/history/ID`, `#/results`, `#/projects`, `#/gave`. */
export type AgentRoute =
  | { page: 'overview' }
  | { page: 'limits' }
  | { page: 'history'; builder: string | null }
  | { page: 'entry'; id: number }
  | { page: 'results' }
  | { page: 'projects' }
  | { page: 'gave' }
  | { page: 'dashboard' }
  | { page: 'not-found'; path: string };

export function parseAgentRoute(hash: string): AgentRoute {
  const raw = hash.replace(/^#/, '') || '/';
  const [path = '/', query = ''] = raw.split('?', 2);
  const parts = path.split('/').filter(Boolean);
  if (parts.length === 0) return { page: 'overview' };
  if (parts.length === 1 && parts[0] === 'limits') return { page: 'limits' };
  if (parts.length === 1 && parts[0] === 'results') return { page: 'results' };
  if (parts.length === 1 && parts[0] === 'projects') return { page: 'projects' };
  if (parts.length === 1 && parts[0] === 'gave') return { page: 'gave' };
  if (parts.length === 1 && parts[0] === 'dashboard') return { page: 'dashboard' };
  if (parts[0] === 'history' && parts.length === 1) return { page: 'history', builder: new URLSearchParams(query).get('builder') || null };
  if (parts[0] === 'history' && parts.length === 2 && /^\d+$/.test(parts[1]!)) return { page: 'entry', id: Number(parts[1]) };
  return { page: 'not-found', path };
}

export const agentHref = {
  overview: () => '#/',
  limits: () => '#/limits',
  history: (builder?: string | null) => (builder ? `#/history?builder=${encodeURIComponent(builder)}` : '#/history'),
  entry: (id: number) => `#/history/${id}`,
  results: () => '#/results',
  projects: () => '#/projects',
  gave: () => '#/gave',
  dashboard: () => '#/dashboard',
};
