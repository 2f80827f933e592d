import assert from 'node:assert/strict';
import { execFileSync, spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { connect, type Server as NetServer, type Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import { createServer } from 'node:tls';
import { RESULT, ROOT, startLab, stopChild, type Lab } from './fixture.js';

const CLI = join(ROOT, 'bin', 'crowdbake.js');

/**
 * `--buildbot wss://…`: BuildBot 3.7 cannot serve TLS on its msgpack port, so, as an operator
 * would, a TLS proxy (here node:tls, forwarding bytes) sits in front of the real master.
 */
describe('BuildBot worker over wss:// (a TLS proxy in front of the real BuildBot 3.7 master)', () => {
  let lab: Lab;
  let dir: string;
  let proxy: NetServer;
  let wssUrl: string;
  const sockets = new Set<Socket>();
  const children: ChildProcess[] = [];

  before(async () => {
    lab = await startLab(['tlsok', 'tlsbad'], ['trivial']);
    dir = mkdtempSync(join(tmpdir(), 'crowdbake-bbtls-'));
    execFileSync('openssl', ['req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes', '-keyout', join(dir, 'key.pem'),
      '-out', join(dir, 'cert.pem'), '-days', '2', '-subj', '/CN=127.0.0.1', '-addext', 'subjectAltName=IP:127.0.0.1'], { stdio: 'ignore' });
    const target = new URL(lab.msgpackUrl);
    proxy = createServer({ key: readFileSync(join(dir, 'key.pem')), cert: readFileSync(join(dir, 'cert.pem')) }, (tls) => {
      const plain = connect(Number(target.port), target.hostname);
      for (const s of [tls, plain]) { sockets.add(s); s.on('close', () => sockets.delete(s)); s.on('error', () => { tls.destroy(); plain.destroy(); }); }
      tls.pipe(plain).pipe(tls);
    });
    proxy.on('tlsClientError', () => {});
    await new Promise<void>((ok) => proxy.listen(0, '127.0.0.1', ok));
    wssUrl = `wss://127.0.0.1:${(proxy.address() as { port: number }).port}`;
  });

  after(async () => {
    for (const c of children) await stopChild(c);
    for (const s of sockets) s.destroy();
    proxy?.close();
    await lab?.stop();
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  const start = (name: string, env: NodeJS.ProcessEnv): { child: ChildProcess; out: () => string } => {
    const child = spawn(process.execPath, [CLI, 'worker', '--buildbot', wssUrl, '--name', name, '--password', `pw-${name}`, '--executor', 'host',
      '--basedir', join(lab.dir, name), '--data', join(dir, name), '--idle-source', 'none'], { stdio: ['ignore', 'pipe', 'pipe'], env });
    children.push(child);
    let out = '';
    child.stdout!.on('data', (d: Buffer) => { out += d.toString(); });
    child.stderr!.on('data', (d: Buffer) => { out += d.toString(); });
    return { child, out: () => out };
  };

  test('with the proxy certificate trusted (NODE_EXTRA_CA_CERTS), builds run over TLS', async () => {
    const { out } = start('tlsok', { ...process.env, NODE_EXTRA_CA_CERTS: join(dir, 'cert.pem') });
    await lab.waitConnected('tlsok');
    assert.match(out(), /buildbot: connected to wss:\/\/127\.0\.0\.1:\d+ as tlsok/);
    const b = await lab.build(await lab.force('trivial@tlsok'));
    assert.equal(b.results, RESULT.SUCCESS);
    assert.match(b.steps.find((s) => s.name === 'echo')!.logs.stdio!, /^ohi$/m);
  });

  test('an untrusted certificate is refused: the worker never connects and says why', async () => {
    const env = { ...process.env };
    delete env.NODE_EXTRA_CA_CERTS;
    const { out } = start('tlsbad', env);
    const deadline = Date.now() + 20_000;
    while (!/self-signed certificate|unable to verify/i.test(out()) && Date.now() < deadline) await sleep(200);
    assert.match(out(), /buildbot: connecting failed: cannot connect to wss:\/\/127\.0\.0\.1:\d+: .*(self-signed certificate|unable to verify)/i);
    const ws = await lab.get<{ workers: { name: string; connected_to: unknown[] }[] }>('workers');
    assert.equal(ws.workers.find((w) => w.name === 'tlsbad')?.connected_to.length, 0);
  });
});
