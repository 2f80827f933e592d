import { spawn, type ChildProcess } from 'node:child_process';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { BuildView } from '../../protocol/api.js';
import { startMaster, type MasterHandle, type MasterOptions } from '../../master/master.js';
import { openStore } from '../../master/store/open-store.js';
import { createWorkerToken } from '../../master/tokens.js';
export { until, whenSteady } from './wait.js';

export const ROOT = fileURLToPath(new URL('../../../', import.meta.url));
export const CLI = join(ROOT, 'bin', 'crowdbake.js');

/** A temp directory removed by `cleanup()`. */
export function tempDir(prefix: string): string {
  return mkdtempSync(join(tmpdir(), `crowdbake-${prefix}-`));
}

export function writeBuilder(configDir: string, name: string, yaml: string): void {
  mkdirSync(join(configDir, 'builders'), { recursive: true });
  writeFileSync(join(configDir, 'builders', `${name}.yml`), yaml);
}

export interface TestMaster extends MasterHandle {
  configDir: string;
  dataDir: string;
  token(name: string, labels?: string[]): Promise<string>;
  force(builder: string, body?: { revision?: string; reason?: string }): Promise<number>;
  waitFinished(id: number, timeoutMs?: number): Promise<BuildView>;
  get<T>(path: string): Promise<T>;
}

/** A real master on 127.0.0.1 with a free port, temp config and data dirs. */
export async function testMaster(builders: Record<string, string>, opts: Partial<MasterOptions> & { dir?: string } = {}): Promise<TestMaster> {
  const dir = opts.dir ?? tempDir('master');
  const configDir = join(dir, 'config');
  const dataDir = join(dir, 'data');
  for (const [name, yaml] of Object.entries(builders)) writeBuilder(configDir, name, yaml);
  mkdirSync(join(configDir, 'builders'), { recursive: true });
  const m = await startMaster({ configDir, dataDir, host: '127.0.0.1', port: 0, heartbeatMs: 2000, ...opts });
  const get = async <T>(path: string): Promise<T> => {
    const r = await fetch(`${m.url}${path}`);
    if (!r.ok) throw new Error(`GET ${path}: HTTP ${r.status} ${await r.text()}`);
    return (await r.json()) as T;
  };
  return {
    ...m,
    configDir,
    dataDir,
    get,
    token: async (name, labels = []) => {
      const store = await openStore(`sqlite:${join(dataDir, 'crowdbake.db')}`);
      try { return await createWorkerToken(store, name, labels); } finally { await store.close(); }
    },
    force: async (builder, body = {}) => {
      const r = await fetch(`${m.url}/api/v1/builders/${builder}/builds`, {
        method: 'POST', headers: { authorization: `Bearer ${m.adminToken}`, 'content-type': 'application/json' },
        body: JSON.stringify(body),
      });
      const j = (await r.json()) as { id: number; error?: string };
      if (r.status !== 201) throw new Error(`force ${builder}: ${r.status} ${j.error}`);
      return j.id;
    },
    waitFinished: (id, timeoutMs = 60_000) => waitFinished(m, get, id, timeoutMs),
  };
}

async function waitFinished(m: MasterHandle, get: <T>(p: string) => Promise<T>, id: number, timeoutMs: number): Promise<BuildView> {
  return new Promise<BuildView>((ok, fail) => {
    const timer = setTimeout(() => { off(); fail(new Error(`build ${id} did not finish within ${timeoutMs} ms`)); }, timeoutMs);
    const off = m.events.subscribe((e) => {
      if (e.type === 'build' && e.build.id === id && e.build.state === 'finished') {
        clearTimeout(timer); off(); ok(e.build);
      }
    });
    // It may have finished before we subscribed.
    get<BuildView>(`/api/v1/builds/${id}`).then((b) => {
      if (b.state === 'finished') { clearTimeout(timer); off(); ok(b); }
    }).catch(() => undefined);
  });
}

/** A worker in its own process (`crowdbake worker`), so a test can SIGKILL it. */
export function workerProcess(url: string, token: string, dataDir: string, extra: string[] = []): ChildProcess & { output: () => string } {
  // The token goes in the environment, as volunteers are told to pass it: argv is visible to every local user.
  const child = spawn(process.execPath, [CLI, 'worker', '--master', url, '--data', dataDir, '--when', 'always', ...extra], {
    stdio: ['ignore', 'pipe', 'pipe'], env: { ...process.env, CROWDBAKE_WORKER_TOKEN: token },
  });
  let out = '';
  child.stdout!.on('data', (c: Buffer) => { out += c.toString(); });
  child.stderr!.on('data', (c: Buffer) => { out += c.toString(); });
  return Object.assign(child, { output: () => out });
}

export function cleanup(...dirs: string[]): void {
  for (const d of dirs) rmSync(d, { recursive: true, force: true });
}
