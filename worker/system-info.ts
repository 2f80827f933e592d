import { readdirSync, readFileSync } from 'node:fs';
import { release, type } from 'node:os';
import { join } from 'node:path';

/**
 * The few facts about this machine the worker needs, read from /etc/os-release and
 * /sys/class/power_supply on Linux. Elsewhere (and for CPU load) the `systeminformation`
 * package answers; it is loaded only then, as it costs several MB of memory.
 */

type SystemInformation = typeof import('systeminformation');
let si: Promise<SystemInformation> | null = null;
function systemInformation(): Promise<SystemInformation> {
  return (si ??= import('systeminformation').then((m) => m.default));
}

/** "Debian GNU/Linux 12", from /etc/os-release (NAME and VERSION_ID). */
export async function osName(): Promise<string> {
  if (process.platform === 'linux') {
    try {
      const text = readFileSync('/etc/os-release', 'utf8');
      const field = (k: string): string => (new RegExp(`^${k}=(.*)$`, 'm').exec(text)?.[1] ?? '').replace(/^(["'])(.*)\1$/, '$2');
      const name = `${field('NAME')} ${field('VERSION_ID')}`.trim();
      if (name) return name;
    } catch { /* no os-release: the kernel's name below */ }
    return `${type()} ${release()}`;
  }
  const o = await (await systemInformation()).osInfo();
  return `${o.distro || o.platform} ${o.release}`.trim();
}

/** True when running on battery, false on mains power, null when there is no battery. */
export async function onBattery(): Promise<boolean | null> {
  if (process.platform !== 'linux') {
    const b = await (await systemInformation()).battery();
    return b.hasBattery ? !b.acConnected : null;
  }
  const dir = '/sys/class/power_supply';
  let names: string[];
  try { names = readdirSync(dir); } catch { return null; }
  const read = (n: string, f: string): string => { try { return readFileSync(join(dir, n, f), 'utf8').trim(); } catch { return ''; } };
  const supplies = names.map((n) => ({ type: read(n, 'type'), online: read(n, 'online'), status: read(n, 'status') }));
  const batteries = supplies.filter((s) => s.type === 'Battery');
  if (batteries.length === 0) return null;
  const mains = supplies.filter((s) => s.type === 'Mains' || s.type.startsWith('USB'));
  if (mains.length) return !mains.some((s) => s.online === '1');
  return batteries.some((s) => s.status === 'Discharging');
}

/** Percent of CPU in use by everything on this machine. */
export async function cpuLoadPercent(): Promise<number> {
  return (await (await systemInformation()).currentLoad()).currentLoad;
}
