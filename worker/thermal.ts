import { readdir, readFile } from 'node:fs/promises';
import { join } from 'node:path';

/** Where Linux lists its thermal zones (each `thermal_zone*` has `temp` in millidegrees Celsius). */
export const THERMAL_ROOT = '/sys/class/thermal';

/**
 * The hottest thermal zone's temperature in °C, or null when none is readable (no
 * /sys/class/thermal, as in most VMs and containers, or another system). A zone reading
 * outside -40…150 °C is a broken sensor and ignored.
 */
export async function hottestZoneC(root = THERMAL_ROOT): Promise<number | null> {
  const zones = await readdir(root).catch(() => [] as string[]);
  let hottest: number | null = null;
  for (const z of zones) {
    if (!z.startsWith('thermal_zone')) continue;
    const text = await readFile(join(root, z, 'temp'), 'utf8').catch(() => null);
    if (text === null || !/^-?\d+\s*$/.test(text)) continue;
    const c = Number(text.trim()) / 1000;
    if (c < -40 || c > 150) continue;
    if (hottest === null || c > hottest) hottest = c;
  }
  return hottest;
}
