import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { createServer } from 'node:https';
import type { AddressInfo } from 'node:net';
import { join } from 'node:path';
import { WebSocketServer } from 'ws';
import { startWorker } from '../worker/agent.js';
import { cleanup, tempDir, testMaster } from './helpers/cluster.js';

function selfSigned(dir: string, name: string): { certFile: string; keyFile: string } {
  const certFile = join(dir, `${name}.crt`);
  const keyFile = join(dir, `${name}.key`);
  execFileSync('openssl', ['req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes', '-keyout', keyFile,
    '-out', certFile, '-days', '2', '-subj', `/CN=${name}`, '-addext', 'subjectAltName=IP:127.0.0.1'], { stdio: 'ignore' });
  return { certFile, keyFile };
}

const ECHO = `requires: { executor: host }\nsteps:\n  - run: echo over tls\n`;

test('wss with the project\'s own certificate: pinned workers connect; unpinned ones are told how; the pin is remembered', async (t) => {
  const dir = tempDir('tls');
  t.after(() => cleanup(dir));
  const m = await testMaster({ echo: ECHO }, { tls: selfSigned(dir, 'master') });
  t.after(() => m.close());
  assert.match(m.url, /^https:/);
  assert.match(m.fingerprint ?? '', /^sha256:[0-9a-f]{64}$/);
  assert.equal(readFileSync(join(m.dataDir, 'tls.fingerprint'), 'utf8').trim(), m.fingerprint);
  const token = await m.token('w1');
  const base = { master: m.url, token, executor: 'host' as const, labels: [], idleSource: 'none' as const, preferences: { when: 'always' as const }, backoff: { minMs: 20, maxMs: 100 } };

  const lines: string[] = [];
  const unpinned = await startWorker({ ...base, dataDir: join(dir, 'w0'), log: (l) => lines.push(l) });
  await unpinned.done;
  await unpinned.close();
  assert.ok(lines.some((l) => /certificate is not trusted by this system .*--pin sha256/.test(l)), lines.join('\n'));

  const wdir = join(dir, 'w1');
  let w = await startWorker({ ...base, dataDir: wdir, pin: m.fingerprint!, log: () => undefined });
  let build = await m.waitFinished((await m.coordinator.requestBuild('echo', {})).id, 30_000);
  assert.equal(build.result, 'success');
  await w.close();
  // Next start without --pin: the saved pin is used.
  w = await startWorker({ ...base, dataDir: wdir, log: () => undefined });
  t.after(() => w.close());
  build = await m.waitFinished((await m.coordinator.requestBuild('echo', {})).id, 30_000);
  assert.deepEqual([build.result, build.worker], ['success', 'w1']);
});

test('an impostor master with another certificate gets no hello and no token', async (t) => {
  const dir = tempDir('tls-impostor');
  t.after(() => cleanup(dir));
  const real = await testMaster({ echo: ECHO }, { dir: join(dir, 'real'), tls: selfSigned(dir, 'real') });
  const pin = real.fingerprint!;
  const token = await real.token('w1');
  await real.close();
  // The impostor answers at some address with its own certificate and records what it hears.
  const { certFile, keyFile } = selfSigned(dir, 'impostor');
  const server = createServer({ cert: readFileSync(certFile), key: readFileSync(keyFile) });
  const heard: string[] = [];
  const wss = new WebSocketServer({ server });
  wss.on('connection', (ws) => ws.on('message', (d) => heard.push(d.toString())));
  await new Promise<void>((ok) => server.listen(0, '127.0.0.1', ok));
  t.after(() => { wss.close(); server.close(); });
  const lines: string[] = [];
  const w = await startWorker({
    master: `wss://127.0.0.1:${(server.address() as AddressInfo).port}`, token, pin, dataDir: join(dir, 'w'), executor: 'host', labels: [],
    idleSource: 'none', preferences: { when: 'always' }, log: (l) => lines.push(l), backoff: { minMs: 20, maxMs: 100 },
  });
  await w.done;
  await w.close();
  assert.ok(lines.some((l) => /is not the one this worker is pinned to: its certificate is sha256:[0-9a-f]{64}, expected sha256:/.test(l)), lines.join('\n'));
  await new Promise((r) => setTimeout(r, 200));
  assert.deepEqual(heard, [], 'nothing was sent to the impostor');
});
