import type { TestContext } from 'node:test';
import { openStore } from '../../master/store/open-store.js';
import { TestDatabases } from '../../master/store/postgres-test-db.js';
import type { Store } from '../../master/store/store.js';
import { createWorkerToken } from '../../master/tokens.js';
import { startWorker, type WorkerHandle } from '../../worker/agent.js';
import { cleanup, tempDir } from './cluster.js';
import type { MasterProcess } from './master-process.js';

/**
 * What the several-masters fault tests share (fault-farm, fault-partition): a database of its
 * own on the test server, the master processes and real in-process workers the test adds,
 * and one teardown in the order that leaves nothing behind — workers, the test's store
 * connection, masters (SIGKILL), what the test registered (`onClose`), the database, the dirs.
 */
export interface FaultFarm {
  url: string;
  dbs: TestDatabases;
  masters: MasterProcess[];
  workers: WorkerHandle[];
  /** The test's own connection to the farm's store (opened by `openStore()`). */
  store(): Store;
  openStore(): Promise<Store>;
  /** A worker with a token of its own, given the master URLs in this order (host executor). */
  worker(name: string, urls: readonly string[], extra?: { maxBuilds?: number }): Promise<WorkerHandle>;
  onClose(f: () => void | Promise<void>): void;
}

export async function faultFarm(t: TestContext, server: string, dir: string): Promise<FaultFarm> {
  const dbs = new TestDatabases(server);
  const url = await dbs.create();
  const masters: MasterProcess[] = [];
  const workers: WorkerHandle[] = [];
  const workerDirs: string[] = [];
  const extra: (() => void | Promise<void>)[] = [];
  let store: Store | null = null;
  t.after(async () => {
    for (const w of workers) await w.close();
    await store?.close();
    for (const m of masters) await m.stop('SIGKILL');
    for (const f of extra) await f();
    await dbs.dropAll();
    cleanup(dir, ...workerDirs);
  });
  return {
    url, dbs, masters, workers,
    store: () => store!,
    openStore: async () => (store = await openStore(url)),
    worker: async (name, urls, opts = {}) => {
      const token = await createWorkerToken(store!, name, []);
      const wd = tempDir('fault-w');
      workerDirs.push(wd);
      const w = await startWorker({
        preferences: { when: 'always' }, idleSource: 'none', master: urls.join(','), token, dataDir: wd,
        executor: 'host', labels: [], log: () => undefined, backoff: { minMs: 50, maxMs: 400 }, ...opts,
      });
      workers.push(w);
      return w;
    },
    onClose: (f) => { extra.push(f); },
  };
}
