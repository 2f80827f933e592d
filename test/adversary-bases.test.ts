import { test } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { readdirSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { join } from 'node:path';
import { WebSocketServer, type WebSocket } from 'ws';
import type { BuildSpec } from '../protocol/build-spec.js';
import { PROTOCOL_VERSION } from '../protocol/version.js';
import { startWorker } from '../worker/agent.js';
import { cleanup, tempDir, until } from './helpers/cluster.js';

// A malicious master sends a real worker assignments whose bases name files and images of the
// volunteer's (host paths, podman transports reading host files, localhost/ images, file://
// mirrors). The builder-file parser never lets these through a real master, so the master here
// is a raw WebSocket server that speaks just enough of the protocol. The test first shows each
// assignment reached the worker, then that the worker refused it naming the base and did
// nothing with it.

const SECRET = `VOLUNTEER-SECRET-${randomBytes(8).toString('hex')}`;

interface FakeMaster {
  url: string;
  frames: string[];
  assign(buildId: number, spec: unknown): Promise<void>;
  finished(buildId: number, timeoutMs?: number): Promise<{ result: string; message: string | null }>;
  close(): Promise<void>;
}

async function fakeMaster(): Promise<FakeMaster> {
  const http = createServer((_req, res) => { res.writeHead(404); res.end(); });
  const wss = new WebSocketServer({ server: http });
  const frames: string[] = [];
  let peer: WebSocket | null = null;
  let hello!: () => void;
  const said = new Promise<void>((ok) => { hello = ok; });
  wss.on('connection', (ws) => {
    peer = ws;
    ws.on('message', (data) => {
      const text = data.toString();
      frames.push(text);
      if (text.startsWith('{') && (JSON.parse(text) as { type: string }).type === 'hello') {
        const name = (JSON.parse(text) as { name: string }).name;
        ws.send(JSON.stringify({ type: 'welcome', protocol: PROTOCOL_VERSION, name, heartbeatMs: 60_000 }), () => hello());
      }
    });
  });
  await new Promise<void>((ok) => http.listen(0, '127.0.0.1', () => ok()));
  const port = (http.address() as AddressInfo).port;
  const finishedOf = (id: number) => frames.map((f) => (f.startsWith('{') ? JSON.parse(f) as Record<string, unknown> : null))
    .find((m) => m?.type === 'state' && m.buildId === id && m.state === 'finished') as { result: string; message: string | null } | undefined;
  return {
    url: `http://127.0.0.1:${port}`,
    frames,
    assign: async (buildId, spec) => {
      let timer: NodeJS.Timeout | undefined;
      await Promise.race([said, new Promise((_ok, fail) => { timer = setTimeout(() => fail(new Error('the worker never said hello')), 20_000); })]);
      clearTimeout(timer);
      await new Promise<void>((ok, fail) => peer!.send(JSON.stringify({ type: 'assign', buildId, attempt: 1, spec }), (e) => (e ? fail(e) : ok())));
    },
    finished: async (id, timeoutMs = 30_000) => {
      await until(`build ${id} finished`, async () => finishedOf(id) !== undefined, timeoutMs);
      return finishedOf(id)!;
    },
    close: async () => {
      const closed = new Promise<void>((ok) => http.close(() => ok()));
      for (const c of wss.clients) c.terminate();
      wss.close();
      http.closeAllConnections();
      await closed;
    },
  };
}

const spec = (executor: 'container' | 'vm', base: string, testBase?: string): BuildSpec => ({
  builder: 'evil', revision: null, source: null, executor,
  environment: { base, setup: [] }, steps: [{ name: 'show', run: 'cat /secret.txt; dd if=/dev/vda bs=1k count=1', env: {} }],
  artifacts: ['*'], limits: {}, network: false,
  testInstall: testBase ? { environment: { base: testBase, setup: [] }, steps: [{ name: 't', run: 'true', env: {} }] } as BuildSpec['testInstall'] : null,
});

test('a malicious master assigns bases naming the volunteer\'s files and images: the worker refuses each, naming the base; nothing is read', async (t) => {
  const secrets = tempDir('secret-bases');
  const secretTar = join(secrets, 'secret.tar');
  writeFileSync(secretTar, SECRET);
  const before = statSync(secretTar).atimeMs;
  const fm = await fakeMaster();
  t.after(() => fm.close());
  const dataDir = tempDir('evil-bases-w');
  const lines: string[] = [];
  const w = await startWorker({
    preferences: { when: 'always' }, idleSource: 'none', master: fm.url, token: `cbw1.victim.${randomBytes(8).toString('hex')}`,
    dataDir, executor: 'container', labels: [], log: (l) => lines.push(l),
  });
  t.after(async () => { await w.close(); cleanup(dataDir, secrets); });
  const attacks: [BuildSpec, RegExp][] = [
    [spec('container', `rootfs:${secretTar}`), /names a path on the worker/],
    [spec('container', 'rootfs:/etc/shadow.tar'), /names a path on the worker/],
    [spec('container', 'rootfs:../../secret.tar'), /names a path on the worker|is not a plain file name|does not name a file/],
    [spec('container', `rootfs:file://${secretTar}`), /names a path on the worker|http|does not name/],
    [spec('container', `image:docker-archive:${secretTar}`), /podman transport/],
    [spec('container', `image:oci-archive:${secretTar}`), /podman transport/],
    [spec('container', 'image:containers-storage:localhost/private:latest'), /podman transport/],
    [spec('container', 'image:localhost/private:latest'), /localhost\//],
    [spec('container', `image:${secretTar}`), /is a path on the worker/],
    [spec('container', 'debootstrap:bookworm@file:///home/volunteer/mirror'), /is a path on the worker/],
    [spec('container', 'busybox', `vm:${secrets}/disk.qcow2`), /names a path on the worker/],
  ];
  for (const [i, [s, why]] of attacks.entries()) {
    // Delivered: the assignment went out on the worker's connection …
    await fm.assign(i + 1, s);
    // … and the worker answered it: refused, naming the base and the problem.
    const done = await fm.finished(i + 1);
    assert.equal(done.result, 'error', JSON.stringify(done));
    const base = s.testInstall?.environment.base ?? s.environment.base;
    assert.ok((done.message ?? '').startsWith('refused by worker '), done.message ?? '');
    assert.ok((done.message ?? '').includes(`base "${base}"`), `${done.message ?? ''} does not name ${base}`);
    assert.match(done.message ?? '', why);
  }
  assert.equal(lines.filter((l) => /^refused build \d+ \(evil\): base /.test(l)).length, attacks.length, lines.join('\n'));
  // Nothing ran: the worker accepted no build (no log frame, no running state), read nothing
  // of the secret, imported nothing.
  const states = fm.frames.filter((f) => f.startsWith('{')).map((f) => JSON.parse(f) as { type: string; state?: string });
  assert.deepEqual(states.filter((x) => x.type === 'state' && x.state !== 'finished'), []);
  assert.ok(!fm.frames.some((f) => f.startsWith('L')), 'no log frame');
  assert.ok(!fm.frames.some((f) => f.includes(SECRET)));
  assert.equal(statSync(secretTar).atimeMs, before, 'the secret file was read');
  assert.equal(readFileSync(secretTar, 'utf8'), SECRET);
  assert.ok(!readdirSync(dataDir).includes('work') || readdirSync(join(dataDir, 'work')).length === 0, 'no build directory was made');
});
