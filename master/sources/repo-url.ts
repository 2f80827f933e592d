/**
 * Repository URLs as builders and webhooks write them, reduced to what names the repository,
 * so `https://GitHub.com/o/r.git/`, `git@github.com:o/r` and `ssh://git@github.com/o/r` compare
 * equal: `host[:port]/path` with the host in lower case, no scheme or user, no `.git` and no
 * trailing `/`. Local repositories (`file:///srv/r.git`, `/srv/r`) become `file:/srv/r`.
 */
export function repoKey(url: string): string {
  const s = url.trim();
  if (/^[a-z][a-z0-9+.-]*:\/\//i.test(s)) {
    let u: URL;
    try { u = new URL(s); } catch { return `raw:${trimPath(s)}`; }
    if (u.protocol === 'file:') return `file:${trimPath(decodeURIComponent(u.pathname))}`;
    const port = u.port && u.port !== DEFAULT_PORT[u.protocol] ? `:${u.port}` : '';
    return `${u.hostname.toLowerCase()}${port}/${trimPath(decodeURIComponent(u.pathname)).replace(/^\/+/, '')}`;
  }
  // scp-like syntax: [user@]host:path (a colon before any slash)
  const scp = /^(?:[^@/]+@)?([^/:]+):(.*)$/.exec(s);
  if (scp) return `${scp[1]!.toLowerCase()}/${trimPath(scp[2]!).replace(/^\/+/, '')}`;
  return s.startsWith('/') ? `file:${trimPath(s)}` : `raw:${trimPath(s)}`;
}

const DEFAULT_PORT: Record<string, string> = { 'ssh:': '22', 'git:': '9418', 'http:': '80', 'https:': '443' };

function trimPath(p: string): string {
  return p.replace(/\/{2,}/g, '/').replace(/\/+$/, '').replace(/\.git$/, '').replace(/\/+$/, '');
}

/** Hides credentials in URLs (`https://user:token@host` -> `https://***@host`, secret query parameters) inside any text. */
export { redactUrls } from '../../protocol/source-url.js';
