import { randomBytes } from 'node:crypto';
import { existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';

/**
 * The farm's id, made once and kept in DATA/farm-id: every cloud instance is tagged with it,
 * so the reaper finds this farm's instances (and only them) after any crash or restart.
 */
export function farmId(dataDir: string): string {
  const file = join(dataDir, 'farm-id');
  if (existsSync(file)) {
    const id = readFileSync(file, 'utf8').trim();
    if (!/^farm-[0-9a-f]{16}$/.test(id)) throw new Error(`${file} does not hold a farm id (farm-<16 hex digits>); restore it, or delete it only if no cloud instance of this farm is left`);
    return id;
  }
  mkdirSync(dataDir, { recursive: true });
  const id = `farm-${randomBytes(8).toString('hex')}`;
  writeFileSync(file, `${id}\n`, { mode: 0o644 });
  return id;
}
