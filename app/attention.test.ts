import assert from 'node:assert/strict';
import { test } from 'node:test';
import { PreferencesSchema, type AgentStatus } from '../protocol/control-api.js';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { attentionItems, DISK_NEARLY_FULL_BYTES, fetchVersionInfo, updateNotice, VERSION_BODY_MAX_BYTES } from './attention.js';

const range = (oldest: number, newest: number, oldestUntil: string | null = null) => ({ version: 'x', workerProtocols: { oldest, newest, oldestUntil } });

test('update notices from the masters\' stated protocol ranges', () => {
  assert.equal(updateNotice([{ master: 'http://a', info: range(1, 2) }], 2).state, 'current');
  assert.equal(updateNotice([{ master: 'http://a', info: null }], 2).state, 'current', 'a master that states nothing (older) asks nothing');
  const available = updateNotice([{ master: 'http://a', info: range(2, 3, '2027-06-30') }], 2);
  assert.equal(available.state, 'available');
  assert.match(available.message, /http:\/\/a speaks worker protocol 3; this version is accepted until 2027-06-30/);
  const required = updateNotice([{ master: 'http://a', info: range(2, 3) }, { master: 'http://b', info: range(3, 3) }], 2);
  assert.equal(required.state, 'required');
  assert.match(required.message, /http:\/\/b no longer accepts this version \(worker protocol 2; it needs 3 or newer\)/);
});

test('what needs the volunteer: an update required, a nearly full disk, a project that refused this computer', () => {
  const status = { projects: [{ name: 'served' }] } as unknown as AgentStatus;
  const current = { state: 'current' as const, message: '' };
  assert.deepEqual(attentionItems({ update: current, freeBytes: DISK_NEARLY_FULL_BYTES * 2, status, joined: ['served'] }), []);
  const items = attentionItems({ update: { state: 'required', message: 'An update is required.' }, freeBytes: 1024 ** 3, status, joined: ['served', 'banned-me'] });
  assert.deepEqual(items, ['An update is required.', 'The disk is nearly full: 1.0 GiB free where builds run.', 'The project banned-me refused this computer (banned, or its token revoked); see Projects.']);
  assert.deepEqual(attentionItems({ update: current, freeBytes: null, status: null, joined: ['x'] }), [], 'no agent: nothing is known to be refused');
  assert.ok(PreferencesSchema.parse({}));
});

/** A real HTTP server on loopback, answering as `handle` says; closed after the test. */
async function server(t: { after(fn: () => unknown): void }, handle: Parameters<typeof createServer>[1]): Promise<{ url: string; hits: () => number }> {
  let hits = 0;
  const s: Server = createServer((req, res) => { hits++; handle!(req, res); });
  await new Promise<void>((ok) => s.listen(0, '127.0.0.1', ok));
  t.after(() => new Promise<void>((ok) => { s.closeAllConnections(); s.close(() => ok()); }));
  return { url: `http://127.0.0.1:${(s.address() as AddressInfo).port}`, hits: () => hits };
}

const GOOD = JSON.stringify(range(1, 2));

test('the version fetch follows no redirect, reads a bounded body, and gives up on a master that stalls', async (t) => {
  const good = await server(t, (_req, res) => { res.setHeader('content-type', 'application/json'); res.end(GOOD); });
  assert.deepEqual(await fetchVersionInfo(good.url), range(1, 2));
  // A redirect (to a server that would answer well): not followed, and that server is never asked.
  const redirect = await server(t, (_req, res) => { res.writeHead(302, { location: `${good.url}/api/v1/version` }); res.end(); });
  const before = good.hits();
  assert.equal(await fetchVersionInfo(redirect.url), null);
  assert.equal(redirect.hits(), 1);
  assert.equal(good.hits(), before, 'the redirect target was not fetched');
  // A body that never ends (no content-length): cut at the cap.
  let written = 0;
  const endless = await server(t, (_req, res) => {
    res.writeHead(200, { 'content-type': 'application/json' });
    const more = () => { while (res.write(`{"x":"${'a'.repeat(8192)}"}`)) { written += 8200; if (written > 64 * VERSION_BODY_MAX_BYTES) return; } res.once('drain', more); };
    more();
  });
  assert.equal(await fetchVersionInfo(endless.url), null);
  // A declared length over the cap: not read at all.
  const big = await server(t, (_req, res) => { res.writeHead(200, { 'content-length': String(VERSION_BODY_MAX_BYTES + 1) }); res.end(' '.repeat(VERSION_BODY_MAX_BYTES + 1)); });
  assert.equal(await fetchVersionInfo(big.url), null);
  // Headers, then silence: the timeout covers the body too.
  const stall = await server(t, (_req, res) => { res.writeHead(200, { 'content-type': 'application/json' }); res.write('{"version":'); });
  assert.equal(await fetchVersionInfo(stall.url, 300), null);
  // Nothing listening; a body that is not JSON.
  assert.equal(await fetchVersionInfo('http://127.0.0.1:1'), null);
  const junk = await server(t, (_req, res) => { res.end('<html>'); });
  assert.equal(await fetchVersionInfo(junk.url), null);
});
