import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import { BaseFiles } from './base-download.js';

// rootfs:/vm: URL#sha256 bases: the worker downloads what the master names, and uses it only
// when its sha256 is the one the builder file gave; loopback and metadata addresses are refused.

const root = mkdtempSync(join(tmpdir(), 'crowdbake-basedl-'));
const content = Buffer.from('a rootfs tarball, more or less\n'.repeat(100));
const sha = createHash('sha256').update(content).digest('hex');
let server: Server;
let base = '';
let hits = 0;

before(async () => {
  server = createServer((req, res) => {
    hits++;
    if (req.url === '/r.tar') return res.end(content);
    if (req.url === '/redirect.tar') { res.writeHead(302, { location: '/r.tar' }); return res.end(); }
    if (req.url === '/to-metadata.tar') { res.writeHead(302, { location: 'http://169.254.169.254/latest/x.tar' }); return res.end(); }
    if (req.url === '/big.tar') return res.end(Buffer.alloc(10_000));
    res.writeHead(404).end();
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  base = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
});
after(() => { server.close(); rmSync(root, { recursive: true, force: true }); });

test('a downloaded base is used only when its sha256 matches, is cached by it, and is capped in size', async () => {
  const dl = join(root, 'dl');
  const files = new BaseFiles({ downloadDir: dl, allowLoopback: true, maxBytes: 5000 });
  const path = await files.locate({ from: 'url', url: `${base}/redirect.tar`, sha256: sha }, 'rootfs:x', () => {});
  assert.deepEqual(readFileSync(path), content);
  const before = hits;
  assert.equal(await new BaseFiles({ downloadDir: dl, allowLoopback: true }).locate({ from: 'url', url: `${base}/r.tar`, sha256: sha }, 'rootfs:x', () => {}), path);
  assert.equal(hits, before, 'served from the cache');
  await assert.rejects(files.locate({ from: 'url', url: `${base}/r.tar`, sha256: 'b'.repeat(64) }, 'rootfs:y', () => {}),
    /base "rootfs:y": the download's sha256 is [0-9a-f]{64}, not the b{64} the builder file names; it is not used/);
  await assert.rejects(files.locate({ from: 'url', url: `${base}/big.tar`, sha256: 'c'.repeat(64) }, 'rootfs:z', () => {}), /over the cap of/);
  await assert.rejects(files.locate({ from: 'url', url: `${base}/missing.tar`, sha256: 'd'.repeat(64) }, 'rootfs:z', () => {}), /the server answered 404/);
  await assert.rejects(files.locate({ from: 'url', url: `${base}/to-metadata.tar`, sha256: 'e'.repeat(64) }, 'rootfs:z', () => {}),
    /169\.254\.169\.254 is a loopback, link-local or multicast address/);
  assert.deepEqual(readdirSync(dl), [`${sha}.file`], 'no partial or mismatched file is left');
  const strict = new BaseFiles({ downloadDir: join(root, 'dl2') });
  await assert.rejects(strict.locate({ from: 'url', url: `${base}/r.tar`, sha256: 'f'.repeat(64) }, 'rootfs:w', () => {}), /127\.0\.0\.1 is a loopback/);
  await assert.rejects(strict.locate({ from: 'url', url: 'http://localhost:9/r.tar', sha256: 'f'.repeat(64) }, 'rootfs:w', () => {}), /localhost is 127\.0\.0\.1, a loopback/);
});
