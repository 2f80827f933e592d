import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdirSync, mkdtempSync, rmSync, utimesSync, writeFileSync } from 'node:fs';
import { createServer, request, type IncomingHttpHeaders } from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { gunzipSync } from 'node:zlib';
import { acceptsGzip, StaticFiles } from './static-files.js';

/** A raw GET (fetch would decompress and hide the encoding). */
function get(port: number, path: string, headers: Record<string, string> = {}): Promise<{ status: number; headers: IncomingHttpHeaders; body: Buffer }> {
  return new Promise((ok, fail) => {
    const r = request({ host: '127.0.0.1', port, path, headers }, (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (c: Buffer) => chunks.push(c));
      res.on('end', () => ok({ status: res.statusCode!, headers: res.headers, body: Buffer.concat(chunks) }));
    });
    r.on('error', fail);
    r.end();
  });
}

test('dashboard files: ETag and 304, gzip only when accepted, index.html for unknown paths and escapes, false when not built', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'crowdbake-static-'));
  const site = join(dir, 'site');
  mkdirSync(site);
  const js = `console.log(${JSON.stringify('x'.repeat(5000))});\n`;
  writeFileSync(join(site, 'app.js'), js);
  writeFileSync(join(site, 'index.html'), '<!doctype html><title>dashboard</title>');
  writeFileSync(join(dir, 'secret.txt'), 'not served');
  const files = new StaticFiles(site);
  const missing = new StaticFiles(join(dir, 'nothing-built'));
  const server = createServer((req, res) => {
    const path = new URL(req.url!, 'http://x').pathname;
    const served = (path.startsWith('/missing') ? missing : files).serve(req, path.replace(/^\/missing/, '') || '/', res);
    if (!served) { res.writeHead(404); res.end('not built'); }
  });
  await new Promise<void>((ok) => server.listen(0, '127.0.0.1', ok));
  t.after(() => { server.close(); rmSync(dir, { recursive: true, force: true }); });
  const port = (server.address() as AddressInfo).port;

  const plain = await get(port, '/app.js');
  assert.equal(plain.status, 200);
  assert.equal(plain.headers['content-encoding'], undefined);
  assert.equal(plain.body.toString(), js);
  assert.equal(plain.headers['content-type'], 'text/javascript; charset=utf-8');
  assert.equal(plain.headers['cache-control'], 'no-cache');
  const etag = plain.headers.etag!;
  assert.match(etag, /^"[0-9a-z]+-[0-9a-z]+"$/);

  const gz = await get(port, '/app.js', { 'accept-encoding': 'gzip, deflate, br' });
  assert.equal(gz.headers['content-encoding'], 'gzip');
  assert.ok(gz.body.length < js.length / 10, `gzipped to ${gz.body.length} bytes`);
  assert.equal(gunzipSync(gz.body).toString(), js);
  assert.equal(gz.headers.etag, etag);
  assert.equal((await get(port, '/app.js', { 'accept-encoding': 'gzip;q=0, identity' })).headers['content-encoding'], undefined);

  const again = await get(port, '/app.js', { 'if-none-match': etag });
  assert.deepEqual([again.status, again.body.length], [304, 0]);
  // A new version of the file has a new ETag (and a fresh gzipped copy).
  writeFileSync(join(site, 'app.js'), `${js}// v2\n`);
  utimesSync(join(site, 'app.js'), new Date(), new Date(Date.now() + 5000));
  const v2 = await get(port, '/app.js', { 'if-none-match': etag, 'accept-encoding': 'gzip' });
  assert.equal(v2.status, 200);
  assert.notEqual(v2.headers.etag, etag);
  assert.match(gunzipSync(v2.body).toString(), /\/\/ v2\n$/);

  for (const path of ['/builds/42', '/../secret.txt', '/%2e%2e/secret.txt', '/%E0%A4%A']) {
    const r = await get(port, path);
    assert.equal(r.status, 200, path);
    assert.equal(r.body.toString(), '<!doctype html><title>dashboard</title>', path);
  }
  const notBuilt = await get(port, '/missing/');
  assert.deepEqual([notBuilt.status, notBuilt.body.toString()], [404, 'not built']);
});

test('acceptsGzip reads Accept-Encoding with q-values', () => {
  assert.equal(acceptsGzip(undefined), false);
  assert.equal(acceptsGzip('gzip'), true);
  assert.equal(acceptsGzip('br, GZIP;q=0.5'), true);
  assert.equal(acceptsGzip('gzip;q=0'), false);
  assert.equal(acceptsGzip('*'), true);
  assert.equal(acceptsGzip('identity'), false);
});
