import { SqliteStore } from './sqlite-store.js';
import type { Store } from './store.js';

/** Opens the store a URL names: `sqlite:PATH` (or a plain path) or `postgres://…` / `postgresql://…`. */
export async function openStore(url: string): Promise<Store> {
  if (url.startsWith('postgres://') || url.startsWith('postgresql://')) {
    // Loaded only when asked for: a master on SQLite never loads the PostgreSQL driver.
    const { PostgresStore } = await import('./postgres-store.js');
    return PostgresStore.open(url);
  }
  const path = url.startsWith('sqlite:') ? url.slice('sqlite:'.length) : url;
  if (!path) throw new Error(`--store ${url}: no file path`);
  return new SqliteStore(path);
}
