import { readFileSync } from 'node:fs';
import { createServer } from 'node:net';

/** The kernel's range for ports it gives out by itself (connect, listen on 0); Linux's default elsewhere. */
function ephemeralRange(): [number, number] {
  try {
    const [low, high] = readFileSync('/proc/sys/net/ipv4/ip_local_port_range', 'utf8').trim().split(/\s+/).map(Number);
    if (low && high) return [low, high];
  } catch { /* not Linux */ }
  return [32768, 60999];
}

function bindsOn(port: number, host: string): Promise<boolean> {
  return new Promise((ok) => {
    const s = createServer();
    s.once('error', () => ok(false));
    s.listen(port, host, () => s.close(() => ok(true)));
  });
}

/**
 * A TCP port free on `host` now, for a process that must be told its port before it starts
 * and binds it seconds later (BuildBot, PostgreSQL, a master restarted on the same address).
 *
 * A port the kernel chose (listen on 0) is in its ephemeral range, which is also where every
 * outgoing connection of the tests running alongside gets its local port: one of them could
 * be given it before that process binds, which then fails to start ("address already in
 * use"). So the port is taken below that range (from 10000), at random, and tried by binding.
 */
export async function freePort(host = '127.0.0.1'): Promise<number> {
  const [low] = ephemeralRange();
  const from = 10_000;
  // A range that starts too low to leave room below it: any port above `from` (the race is back).
  const to = low > from + 1000 ? low - 1 : 65_535;
  for (let i = 0; i < 50; i++) {
    const port = from + Math.floor(Math.random() * (to - from + 1));
    if (await bindsOn(port, host)) return port;
  }
  throw new Error(`no free port on ${host} between ${from} and ${to} after 50 tries`);
}
