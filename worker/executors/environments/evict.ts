import { setTimeout as sleep } from 'node:timers/promises';
import { podman } from '../podman.js';
import { formatBytes } from '../step-support.js';
import type { CacheIndex, IndexEntries } from './cache-index.js';
import { ENV_LABEL } from './keys.js';
import type { Progress } from './shared-build.js';

/**
 * Keeps the environment images listed in a cache index within a size budget by removing the
 * least recently used ones. Only images that are in the index AND carry the crowdbake.env=1
 * label are candidates, so images a user made or pulled are never touched. An image is
 * removed only when no other cached image stacks on it (removing a parent would just untag
 * it and free nothing), never when it is protected (the environment in use) and never with
 * --force: podman refuses to remove an image a container still uses, and that is respected.
 *
 * An image's size is its own layer: podman's size minus its parent's, so a stack of setup
 * layers on a 150 MB base counts the base once.
 */

interface PodmanImage {
  Id: string;
  Names?: string[] | null;
  Size: number;
  Labels?: Record<string, string> | null;
  Containers?: number;
}

export interface EvictResult {
  /** Bytes used by the indexed images before and after. */
  before: number;
  after: number;
  removed: string[];
}

export async function evictOverBudget(index: CacheIndex, budgetBytes: number, protect: ReadonlySet<string>, progress: Progress): Promise<EvictResult> {
  return index.update(async (entries) => {
    const images = await listImages();
    const byName = new Map<string, PodmanImage>();
    for (const image of images) for (const name of image.Names ?? []) byName.set(name, image);
    for (const ref of Object.keys(entries)) if (!byName.has(ref)) delete entries[ref];

    const ours = Object.keys(entries).filter((ref) => byName.get(ref)?.Labels?.[ENV_LABEL] === '1');
    const size = new Map(ours.map((ref) => [ref, ownSize(ref, entries, byName)]));
    const total = (): number => [...size.values()].reduce((a, b) => a + b, 0);
    const before = total();
    const removed: string[] = [];
    const skip = new Set<string>();
    while (total() > budgetBytes) {
      const parents = new Set([...size.keys()].map((ref) => entries[ref]?.parent));
      const candidates = [...size.keys()].filter((ref) => !protect.has(ref) && !skip.has(ref) && !parents.has(ref)
        && (byName.get(ref)?.Containers ?? 0) === 0);
      candidates.sort((a, b) => (entries[a]?.lastUsed ?? 0) - (entries[b]?.lastUsed ?? 0));
      const victim = candidates[0];
      if (victim === undefined) {
        progress(`environment cache: ${formatBytes(total())} is over its budget of ${formatBytes(budgetBytes)}, but what is left is in use`);
        break;
      }
      const entry = entries[victim];
      const r = await podman(['rmi', victim], { allowFailure: true, timeoutMs: 120_000 });
      if (r.code !== 0) {
        skip.add(victim);
        progress(`environment cache: could not evict ${victim}: ${r.stderr.trim().split('\n').pop() ?? `exit code ${r.code}`}`);
        continue;
      }
      const used = entry ? new Date(entry.lastUsed).toISOString() : 'never';
      progress(`environment cache: evicted ${victim} (${entry?.environment ?? '?'}, ${formatBytes(size.get(victim) ?? 0)}, last used ${used}) to stay within ${formatBytes(budgetBytes)}`);
      size.delete(victim);
      delete entries[victim];
      removed.push(victim);
    }
    return { before, after: total(), removed };
  });
}

async function listImages(): Promise<PodmanImage[]> {
  // Listing can fail while another process removes an image at the same moment: try again.
  let r = await podman(['images', '--format', 'json'], { timeoutMs: 60_000, allowFailure: true });
  for (let i = 0; i < 3 && r.code !== 0; i++) {
    await sleep(200);
    r = await podman(['images', '--format', 'json'], { timeoutMs: 60_000, allowFailure: i < 2 });
  }
  const { stdout } = r;
  const parsed = JSON.parse(stdout || '[]') as unknown;
  if (!Array.isArray(parsed)) throw new Error('podman images --format json did not print a list');
  return parsed as PodmanImage[];
}

function ownSize(ref: string, entries: IndexEntries, byName: ReadonlyMap<string, PodmanImage>): number {
  const self = byName.get(ref)?.Size ?? 0;
  const parentRef = entries[ref]?.parent;
  const parent = parentRef ? byName.get(parentRef) : undefined;
  return Math.max(0, self - (parent?.Size ?? 0));
}
