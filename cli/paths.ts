import { homedir } from 'node:os';
import { join } from 'node:path';

/** Default data directories: $XDG_DATA_HOME/crowdbake/<role> (~/.local/share/crowdbake/<role>). */
export function defaultDataDir(role: 'master' | 'worker' | 'demo'): string {
  const base = process.env.XDG_DATA_HOME || join(homedir(), '.local', 'share');
  return join(base, 'crowdbake', role);
}
