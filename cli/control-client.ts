import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { processAlive } from '../worker/process-alive.js';

/** Talks to a running agent's control API, found through DATA/control.json. */
export class ControlClient {
  private constructor(private readonly url: string, private readonly secret: string) {}

  /** Null when no agent is running for this data dir (or it died without cleaning up). */
  static open(dataDir: string): { client: ControlClient } | { offline: string } {
    const file = join(dataDir, 'control.json');
    if (!existsSync(file)) return { offline: `no agent is running for ${dataDir} (no control.json)` };
    let info: { url?: string; secret?: string; pid?: number };
    try {
      info = JSON.parse(readFileSync(file, 'utf8')) as typeof info;
    } catch (e) {
      return { offline: `${file} is unreadable: ${(e as Error).message}` };
    }
    if (typeof info.url !== 'string' || typeof info.secret !== 'string') return { offline: `${file} is incomplete` };
    if (typeof info.pid === 'number' && !processAlive(info.pid)) return { offline: `the agent (pid ${info.pid}) is not running` };
    return { client: new ControlClient(info.url, info.secret) };
  }

  async call<T>(method: string, path: string, body?: unknown): Promise<T> {
    let res: Response;
    try {
      res = await fetch(`${this.url}/api/v1${path}`, {
        method,
        headers: { authorization: `Bearer ${this.secret}`, ...(body !== undefined ? { 'content-type': 'application/json' } : {}) },
        ...(body !== undefined ? { body: JSON.stringify(body) } : {}),
      });
    } catch (e) {
      throw new Error(`cannot reach the agent at ${this.url}: ${(e as Error).cause ?? (e as Error).message}`);
    }
    const text = await res.text();
    if (!res.ok) {
      let msg = text;
      try { msg = (JSON.parse(text) as { error: string }).error; } catch { /* plain text */ }
      throw new Error(`the agent refused: ${msg}`);
    }
    return (text && res.headers.get('content-type')?.includes('json') ? JSON.parse(text) : text) as T;
  }
}

