import { spawn } from 'node:child_process';
import { timingSafeEqual } from 'node:crypto';
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { resolve, sep } from 'node:path';

/**
 * A small read-only git server over smart HTTP on 127.0.0.1: `git http-backend` run as a CGI
 * program behind node's http server. Builds may only fetch their sources over https://,
 * http:// or git:// (protocol/source-url.ts), so the demo and the tests serve their local
 * sample repositories with it instead of handing out paths.
 *
 * It serves the git repositories under `root` (`http://127.0.0.1:PORT/NAME` is `ROOT/NAME`,
 * bare or not), fetch only (no push), optionally behind HTTP basic auth. `git http-backend`
 * runs with a clean environment (no system or global git config) and refuses paths outside
 * `root` itself; the server also refuses `..` before it starts one.
 */
export interface GitHttpServer {
  /** `http://127.0.0.1:PORT` */
  url: string;
  port: number;
  /** The clone URL of the repository `ROOT/name`, with `user:password@` when the server asks for it and `withAuth` is not false. */
  urlOf(name: string, opts?: { withAuth?: boolean }): string;
  /** Every request so far: method, path and whether it carried the right credentials. */
  readonly requests: { method: string; path: string; authorized: boolean }[];
  close(): Promise<void>;
}

export interface GitHttpServerOptions {
  root: string;
  /** When set, every request needs these credentials (HTTP basic); others get 401. */
  auth?: { user: string; password: string };
  /** Default 0: a free port. */
  port?: number;
}

export async function startGitHttpServer(opts: GitHttpServerOptions): Promise<GitHttpServer> {
  const root = resolve(opts.root);
  const requests: GitHttpServer['requests'] = [];
  const expected = opts.auth ? Buffer.from(`Basic ${Buffer.from(`${opts.auth.user}:${opts.auth.password}`).toString('base64')}`) : null;
  const server: Server = createServer((req, res) => {
    const u = new URL(req.url ?? '/', 'http://127.0.0.1');
    let path: string;
    try { path = decodeURIComponent(u.pathname); } catch { path = ''; }
    const given = Buffer.from(req.headers.authorization ?? '');
    const authorized = expected === null || (given.length === expected.length && timingSafeEqual(given, expected));
    requests.push({ method: req.method ?? '', path, authorized });
    if (!authorized) {
      res.writeHead(401, { 'www-authenticate': 'Basic realm="crowdbake git"', 'content-type': 'text/plain' });
      res.end('authentication required\n');
      return;
    }
    if (!path.startsWith('/') || path.split('/').includes('..') || path.includes('\0') || /\/git-receive-pack$/.test(path) || u.searchParams.get('service') === 'git-receive-pack') {
      res.writeHead(403, { 'content-type': 'text/plain' });
      res.end('forbidden\n');
      return;
    }
    if (!resolve(root, `.${path}`).startsWith(root + sep)) {
      res.writeHead(403, { 'content-type': 'text/plain' });
      res.end('forbidden\n');
      return;
    }
    cgi(root, path, u.search.slice(1), req, res);
  });
  server.unref();
  await new Promise<void>((ok, fail) => {
    server.once('error', fail);
    server.listen(opts.port ?? 0, '127.0.0.1', () => ok());
  });
  const port = (server.address() as AddressInfo).port;
  const url = `http://127.0.0.1:${port}`;
  return {
    url, port, requests,
    urlOf: (name, o = {}) => {
      const cred = opts.auth && o.withAuth !== false ? `${encodeURIComponent(opts.auth.user)}:${encodeURIComponent(opts.auth.password)}@` : '';
      return `http://${cred}127.0.0.1:${port}/${name.split('/').map(encodeURIComponent).join('/')}`;
    },
    close: () => new Promise<void>((ok) => {
      server.close(() => ok());
      server.closeAllConnections();
    }),
  };
}

/** Runs `git http-backend` for one request (RFC 3875 CGI): request headers in, CGI headers and body out. */
function cgi(root: string, pathInfo: string, query: string, req: IncomingMessage, res: ServerResponse): void {
  const env: NodeJS.ProcessEnv = {
    PATH: process.env.PATH ?? '/usr/local/bin:/usr/bin:/bin',
    LANG: 'C',
    GIT_CONFIG_NOSYSTEM: '1',
    GIT_CONFIG_GLOBAL: '/dev/null',
    GIT_PROJECT_ROOT: root,
    GIT_HTTP_EXPORT_ALL: '1',
    // Fetching a commit by sha that no branch reaches (a pull request's head), as forges allow.
    GIT_CONFIG_COUNT: '2',
    GIT_CONFIG_KEY_0: 'uploadpack.allowAnySHA1InWant', GIT_CONFIG_VALUE_0: 'true',
    GIT_CONFIG_KEY_1: 'http.receivepack', GIT_CONFIG_VALUE_1: 'false',
    GATEWAY_INTERFACE: 'CGI/1.1',
    SERVER_PROTOCOL: `HTTP/${req.httpVersion}`,
    REQUEST_METHOD: req.method ?? 'GET',
    PATH_INFO: pathInfo,
    QUERY_STRING: query,
    REMOTE_ADDR: req.socket.remoteAddress ?? '127.0.0.1',
  };
  if (req.headers['content-type']) env.CONTENT_TYPE = req.headers['content-type'];
  if (req.headers['content-length']) env.CONTENT_LENGTH = req.headers['content-length'];
  const proto = req.headers['git-protocol'];
  if (typeof proto === 'string') env.GIT_PROTOCOL = proto;
  for (const [k, v] of Object.entries(req.headers)) {
    if (typeof v === 'string' && k !== 'authorization' && k !== 'proxy') env[`HTTP_${k.toUpperCase().replace(/-/g, '_')}`] = v;
  }
  const child = spawn('git', ['http-backend'], { env, stdio: ['pipe', 'pipe', 'pipe'] });
  req.pipe(child.stdin);
  child.stdin.on('error', () => undefined);
  child.stderr.resume();
  let head = Buffer.alloc(0);
  let started = false;
  child.stdout.on('data', (chunk: Buffer) => {
    if (started) { res.write(chunk); return; }
    head = Buffer.concat([head, chunk]);
    const text = head.toString('latin1');
    const m = /\r?\n\r?\n/.exec(text);
    if (!m) return;
    started = true;
    let status = 200;
    const headers: Record<string, string> = {};
    for (const line of text.slice(0, m.index).split(/\r?\n/)) {
      const i = line.indexOf(':');
      if (i < 0) continue;
      const name = line.slice(0, i).trim().toLowerCase();
      const value = line.slice(i + 1).trim();
      if (name === 'status') status = parseInt(value, 10) || 500;
      else headers[name] = value;
    }
    res.writeHead(status, headers);
    res.write(head.subarray(m.index + m[0].length));
  });
  child.on('error', () => { if (!res.headersSent) res.writeHead(500); res.end(); });
  child.on('close', () => {
    if (!started && !res.headersSent) res.writeHead(502, { 'content-type': 'text/plain' });
    res.end();
  });
  res.on('close', () => { if (child.exitCode === null) child.kill(); });
}
