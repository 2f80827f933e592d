import { test } from 'node:test';
import assert from 'node:assert/strict';
import type { IncomingMessage } from 'node:http';
import { clientAddressResolver } from './client-address.js';

const req = (peer: string, xff?: string) => ({ socket: { remoteAddress: peer }, headers: xff === undefined ? {} : { 'x-forwarded-for': xff } }) as unknown as IncomingMessage;

test('X-Forwarded-For counts only from trusted proxies, and its last untrusted hop is the client', () => {
  const none = clientAddressResolver([]);
  assert.equal(none(req('::ffff:10.0.0.5', '1.2.3.4')), '10.0.0.5', 'no trusted proxies: the header is ignored');
  const r = clientAddressResolver(['10.0.0.0/8', '::1']);
  assert.equal(r(req('10.1.2.3', '203.0.113.9')), '203.0.113.9');
  assert.equal(r(req('10.1.2.3', '6.6.6.6, 203.0.113.9, 10.9.9.9')), '203.0.113.9', 'a spoofed left hop is not believed');
  assert.equal(r(req('192.0.2.1', '203.0.113.9')), '192.0.2.1', 'an untrusted peer cannot name its address');
  assert.equal(r(req('::1', '2001:db8::1')), '2001:db8::1');
  assert.equal(r(req('10.1.2.3')), '10.1.2.3', 'no header: the proxy itself');
});
