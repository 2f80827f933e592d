import { readFileSync } from 'node:fs';
import { createInterface } from 'node:readline';
import WebSocket from 'ws';
import { encodeLogFrame } from '../../protocol/log-frame.js';
import { PROTOCOL_VERSION } from '../../protocol/version.js';
import type { WorkerMessage } from '../../protocol/worker-messages.js';

/**
 * SIMULATED workers for `bench/scale.ts` (a fake fleet, not real agents), many per process:
 * real WebSocket clients speaking the real worker protocol — `hello` with a real token,
 * pongs to the master's heartbeat pings (ws answers them), `accepted`, `step` running, the
 * log as a protocol-2 log frame, `step` finished, `state finished` — but running nothing.
 * Unlike sim-fleet.ts they connect accepting, so a build queued on any master is assigned
 * to one of them at once; each `assign` is timestamped on arrival (wall clock, same as the
 * bench's) before it is answered.
 *
 * Run as a child process: `node dist/bench/lib/scale-fleet.js` with BENCH_SCALE_FLEET set to (or to `@FILE` holding)
 * {"urls": [ws url per master], "workers": [[name, token, masterIndex], …], "inFlight": N}.
 * At most `inFlight` hellos are outstanding at once (the masters check each token in the
 * store). Prints `ready` once every worker is welcomed, `failed <why>` if one is refused.
 * On the stdin line `dump` it prints one JSON line: {"assigned": [[buildId, atMs], …] since
 * the last dump, "cpuMs": this process's CPU so far, "rssMiB"}.
 */
interface Config { urls: string[]; workers: [string, string, number][]; inFlight: number }

// `@FILE` names a file holding the JSON: thousands of tokens are more than one environment string may hold (E2BIG past 128 KiB).
const raw = process.env.BENCH_SCALE_FLEET ?? '{}';
const cfg = JSON.parse(raw.startsWith('@') ? readFileSync(raw.slice(1), 'utf8') : raw) as Config;
if (!Array.isArray(cfg.urls) || !Array.isArray(cfg.workers)) {
  process.stderr.write('scale-fleet: BENCH_SCALE_FLEET must be {"urls": [...], "workers": [[name, token, master], ...], "inFlight": N}\n');
  process.exit(2);
}
const CAPS = { os: 'simulated', platform: 'linux', arch: 'x64', cpus: 1, memoryBytes: 1 << 30, diskBytes: 1 << 30, executors: ['host'], labels: [], maxBuilds: 1, virtualization: false };
const sockets: WebSocket[] = [];
let assigned: [number, number][] = [];
let welcomed = 0;
let pending = 0;
let next = 0;
const wallMs = (): number => performance.timeOrigin + performance.now();

function connectMore(): void {
  while (pending < Math.max(1, cfg.inFlight) && next < cfg.workers.length) {
    const [name, token, master] = cfg.workers[next++]!;
    pending++;
    connect(name, token, cfg.urls[master % cfg.urls.length]!);
  }
}

function connect(name: string, token: string, url: string): void {
  const ws = new WebSocket(url);
  sockets.push(ws);
  let isWelcomed = false;
  const send = (m: WorkerMessage): void => ws.send(JSON.stringify(m));
  ws.on('open', () => send({ type: 'hello', protocol: PROTOCOL_VERSION, name, token, agentVersion: 'simulated', capabilities: CAPS as never, accepting: true, reason: 'simulated' }));
  ws.on('message', (data) => {
    const text = data.toString();
    const m = JSON.parse(text) as { type: string; buildId: number; attempt: number; message?: string; fatal?: boolean };
    if (m.type === 'assign') {
      assigned.push([m.buildId, wallMs()]);
      const ref = { buildId: m.buildId, attempt: m.attempt };
      send({ type: 'accepted', ...ref });
      send({ type: 'step', ...ref, index: 0, name: 'echo', state: 'running', result: null, exitCode: null });
      ws.send(encodeLogFrame(m.buildId, m.attempt, 'hi\n'));
      send({ type: 'step', ...ref, index: 0, name: 'echo', state: 'finished', result: 'success', exitCode: 0 });
      send({ type: 'state', ...ref, state: 'finished', result: 'success', message: null });
    } else if (m.type === 'welcome') {
      isWelcomed = true;
      pending--;
      if (++welcomed === cfg.workers.length) process.stdout.write('ready\n');
      connectMore();
    } else if (m.type === 'error' && m.fatal) {
      process.stdout.write(`failed simulated worker ${name}: ${m.message}\n`);
    }
  });
  ws.on('error', (e) => process.stdout.write(`failed simulated worker ${name}: ${e.message}\n`));
  ws.on('close', (code, reason) => {
    if (!isWelcomed) process.stdout.write(`failed simulated worker ${name}: closed before welcome (${code} ${reason.toString()})\n`);
  });
}

connectMore();

createInterface({ input: process.stdin }).on('line', (line) => {
  if (line.trim() !== 'dump') return;
  const cpu = process.cpuUsage();
  process.stdout.write(`${JSON.stringify({ assigned, cpuMs: (cpu.user + cpu.system) / 1000, rssMiB: process.memoryUsage().rss / 2 ** 20 })}\n`);
  assigned = [];
});
process.stdin.on('end', () => { for (const ws of sockets) ws.terminate(); process.exit(0); });
