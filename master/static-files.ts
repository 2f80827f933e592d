import { createReadStream, readFileSync, statSync, type Stats } from 'node:fs';
import type { IncomingMessage, ServerResponse } from 'node:http';
import { extname, join, normalize } from 'node:path';
import { gzipSync } from 'node:zlib';

const MIME: Record<string, string> = {
  '.html': 'text/html; charset=utf-8', '.js': 'text/javascript; charset=utf-8', '.css': 'text/css; charset=utf-8',
  '.map': 'application/json', '.svg': 'image/svg+xml', '.png': 'image/png', '.ico': 'image/x-icon',
};
const COMPRESSIBLE = new Set(['.html', '.js', '.css', '.map', '.svg']);

/**
 * The dashboard's files (the built renderer). Unknown paths get index.html (the dashboard
 * routes by hash). Each answer carries an ETag and `Cache-Control: no-cache`, so a browser
 * revalidates and gets 304 for what it holds, and text files go gzipped to browsers that
 * accept it: the 403 KB bundle is 121 KB on the wire, which is what a maintainer's dashboard
 * over a real network waits for. A gzipped copy is made once per file version and kept in
 * memory.
 */
export class StaticFiles {
  private readonly gzipped = new Map<string, { etag: string; body: Buffer }>();

  constructor(private readonly dir: string) {}

  /** Answers with the file `path` names (or index.html); false when the dashboard is not built. */
  serve(req: IncomingMessage, path: string, res: ServerResponse): boolean {
    let rel: string;
    try {
      rel = normalize(decodeURIComponent(path)).replace(/^(\.\.[/\\])+/, '');
    } catch {
      rel = 'index.html'; // a malformed %-escape names no file
    }
    let file = join(this.dir, rel);
    let st: Stats | undefined = file.startsWith(this.dir) ? statSync(file, { throwIfNoEntry: false }) : undefined;
    if (!st || st.isDirectory()) {
      file = join(this.dir, 'index.html');
      st = statSync(file, { throwIfNoEntry: false });
    }
    if (!st) return false;
    const ext = extname(file);
    const etag = `"${st.size.toString(36)}-${Math.floor(st.mtimeMs).toString(36)}"`;
    const headers: Record<string, string> = {
      'content-type': MIME[ext] ?? 'application/octet-stream', 'cache-control': 'no-cache', etag,
      'x-content-type-options': 'nosniff', vary: 'accept-encoding',
    };
    if (req.headers['if-none-match'] === etag) {
      res.writeHead(304, headers);
      res.end();
      return true;
    }
    if (COMPRESSIBLE.has(ext) && st.size >= 1024 && acceptsGzip(req.headers['accept-encoding'])) {
      let gz = this.gzipped.get(file);
      if (gz?.etag !== etag) {
        gz = { etag, body: gzipSync(readFileSync(file), { level: 9 }) };
        this.gzipped.set(file, gz);
      }
      res.writeHead(200, { ...headers, 'content-encoding': 'gzip', 'content-length': String(gz.body.length) });
      res.end(req.method === 'HEAD' ? undefined : gz.body);
      return true;
    }
    res.writeHead(200, { ...headers, 'content-length': String(st.size) });
    if (req.method === 'HEAD') res.end();
    else createReadStream(file).pipe(res);
    return true;
  }
}

/** Whether an Accept-Encoding header allows gzip (not refused with q=0). */
export function acceptsGzip(header: string | undefined): boolean {
  if (!header) return false;
  for (const part of header.split(',')) {
    const [name, ...params] = part.trim().split(';').map((s) => s.trim().toLowerCase());
    if (name !== 'gzip' && name !== '*') continue;
    const q = params.find((p) => p.startsWith('q='));
    return q === undefined || Number(q.slice(2)) > 0;
  }
  return false;
}
