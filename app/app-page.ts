import { existsSync, readFileSync, statSync } from 'node:fs';
import { extname, join, normalize, sep } from 'node:path';

/** The window's own scheme: the volunteer pages are served from the app's files, never from a network origin. */
export const APP_SCHEME = 'crowdbake-app';
export const APP_PAGE = `${APP_SCHEME}://app/index.html`;

const MIME: Record<string, string> = {
  '.html': 'text/html; charset=utf-8', '.js': 'text/javascript; charset=utf-8', '.css': 'text/css; charset=utf-8',
  '.map': 'application/json', '.svg': 'image/svg+xml', '.png': 'image/png',
};
/** No network for the page: it reaches the agent only through the preload's IPC map. */
export const APP_PAGE_CSP = "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'none'; object-src 'none'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'";

export interface PageResponse { status: number; headers: Record<string, string>; body: Buffer }

/**
 * The answer for one request of the window's scheme: a file of the built renderer
 * (dist/renderer), index.html marked `crowdbake-mode=app`; a path outside that directory is
 * refused. Plain Node so the Chromium tests serve the window exactly as the app does.
 */
export function appPageResponse(rendererDir: string, url: string): PageResponse {
  let path: string;
  try { path = decodeURIComponent(new URL(url).pathname); } catch { return notFound(`bad URL ${url}`); }
  const rel = normalize(path).replace(/^([/\\])+/, '');
  const file = join(rendererDir, rel || 'index.html');
  if (!file.startsWith(rendererDir.endsWith(sep) ? rendererDir : rendererDir + sep) || !existsSync(file) || statSync(file).isDirectory()) return notFound(`no page ${path}`);
  const headers: Record<string, string> = { 'content-type': MIME[extname(file)] ?? 'application/octet-stream', 'x-content-type-options': 'nosniff', 'cache-control': 'no-cache' };
  if (file.endsWith('index.html')) {
    const html = readFileSync(file, 'utf8').replace('<head>', '<head>\n    <meta name="crowdbake-mode" content="app">');
    return { status: 200, headers: { ...headers, 'content-security-policy': APP_PAGE_CSP }, body: Buffer.from(html) };
  }
  return { status: 200, headers, body: readFileSync(file) };
}

function notFound(why: string): PageResponse {
  return { status: 404, headers: { 'content-type': 'text/plain; charset=utf-8' }, body: Buffer.from(why) };
}

/** Whether a frame's URL is the app's own page (the only sender whose IPC calls are answered). */
export function isAppPageUrl(url: string): boolean {
  try {
    const u = new URL(url);
    return u.protocol === `${APP_SCHEME}:` && u.host === 'app';
  } catch {
    return false;
  }
}
