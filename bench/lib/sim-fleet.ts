import { createInterface } from 'node:readline';
import WebSocket from 'ws';
import { PROTOCOL_VERSION } from '../../protocol/version.js';
import type { WorkerMessage } from '../../protocol/worker-messages.js';

/**
 * SIMULATED workers (a fake fleet, not real agents): real WebSocket clients that speak the
 * real worker protocol — hello with a real token, `accepted`, `step`, `log`, `state` — but run
 * nothing: each assignment is answered at once as a successful one-step build. They connect
 * with `accepting: false`; the line `go` on stdin makes them all accept at once.
 *
 * Run as a child process: `node dist/bench/lib/sim-fleet.js` with BENCH_SIM set to
 * {"url": "ws://…/api/v1/worker", "workers": [[name, token], …]}. Prints `ready` once every
 * worker is welcomed.
 */
interface Config { url: string; workers: [string, string][] }

const cfg = JSON.parse(process.env.BENCH_SIM ?? '{}') as Config;
const sockets: WebSocket[] = [];
let welcomed = 0;
const CAPS = { os: 'simulated', platform: 'linux', arch: 'x64', cpus: 1, memoryBytes: 1 << 30, diskBytes: 1 << 30, executors: ['host'], labels: [], maxBuilds: 1, virtualization: false };

for (const [name, token] of cfg.workers) {
  const ws = new WebSocket(cfg.url);
  sockets.push(ws);
  const send = (m: WorkerMessage): void => ws.send(JSON.stringify(m));
  ws.on('open', () => send({ type: 'hello', protocol: PROTOCOL_VERSION, name, token, agentVersion: 'simulated', capabilities: CAPS as never, accepting: false, reason: 'simulated, waiting for go' }));
  ws.on('message', (data) => {
    const m = JSON.parse(data.toString()) as { type: string; buildId: number; attempt: number; message?: string; fatal?: boolean };
    if (m.type === 'welcome') {
      if (++welcomed === cfg.workers.length) process.stdout.write('ready\n');
    } else if (m.type === 'assign') {
      const ref = { buildId: m.buildId, attempt: m.attempt };
      send({ type: 'accepted', ...ref });
      send({ type: 'step', ...ref, index: 0, name: 'echo', state: 'running', result: null, exitCode: null });
      send({ type: 'log', ...ref, data: 'hi\n' });
      send({ type: 'step', ...ref, index: 0, name: 'echo', state: 'finished', result: 'success', exitCode: 0 });
      send({ type: 'state', ...ref, state: 'finished', result: 'success', message: null });
    } else if (m.type === 'error' && m.fatal) {
      process.stderr.write(`simulated worker ${name}: ${m.message}\n`);
    }
  });
  ws.on('error', (e) => process.stderr.write(`simulated worker ${name}: ${e.message}\n`));
}

createInterface({ input: process.stdin }).on('line', (line) => {
  if (line.trim() === 'go') for (const ws of sockets) ws.send(JSON.stringify({ type: 'availability', accepting: true, reason: 'simulated' } satisfies WorkerMessage));
});
process.stdin.on('end', () => { for (const ws of sockets) ws.close(); process.exit(0); });
