import { EventEmitter } from 'node:events';
import { mkdirSync, readdirSync, readFileSync, statSync, watch, type FSWatcher } from 'node:fs';
import { join } from 'node:path';
import { isDeepStrictEqual } from 'node:util';
import type { BuilderDefinition } from '../../protocol/builder-file.js';
import { builderNameFromPath, parseBuilderFile } from './builder-file-loader.js';

export {
  ConfigError, loadMasterConfig, parseMasterConfig, readMasterConfig, type MasterConfig, type MasterConfigResult,
} from './master-config.js';

/**
 * The builders of one config dir, `CONFIG/builders/*.yml`. A file that breaks keeps its last
 * good definition active and carries the error; a deleted file removes its builder.
 */
export interface BuilderEntry {
  name: string;
  /** The active definition: the last valid version of the file, null when it was never valid. */
  definition: BuilderDefinition | null;
  /** Every problem with the file as it is now, one per line; null when it is valid. */
  error: string | null;
  /** Relative to the config dir: `builders/hello.yml`. */
  file: string;
}

export interface BuilderRegistryOptions {
  /** Quiet time after the last file event before reloading. Default 100 ms. */
  debounceMs?: number;
  /** Larger files are refused (and keep their last good version). Default 1 MiB. */
  maxFileBytes?: number;
}

interface Slot extends BuilderEntry {
  text: string | null;
}

export class BuilderRegistry extends EventEmitter<{ change: [BuilderEntry[]] }> {
  readonly configDir: string;
  readonly buildersDir: string;
  private readonly debounceMs: number;
  private readonly maxFileBytes: number;
  private slots = new Map<string, Slot>();
  /** Problems that belong to no one builder: unreadable dir, ignored duplicate file, watcher failure. */
  private general: string[] = [];
  private watchProblem: string | null = null;
  private watcher: FSWatcher | null = null;
  private timer: NodeJS.Timeout | null = null;
  private loaded = false;
  private closed = false;

  constructor(configDir: string, options: BuilderRegistryOptions = {}) {
    super();
    this.configDir = configDir;
    this.buildersDir = join(configDir, 'builders');
    this.debounceMs = options.debounceMs ?? 100;
    this.maxFileBytes = options.maxFileBytes ?? 1024 * 1024;
  }

  /** Reads every builder file now (synchronously) and returns the list; emits 'change' if it differs. */
  load(): BuilderEntry[] {
    this.loaded = true;
    this.reload();
    return this.list();
  }

  /** Reloads (debounced) whenever a file in `builders/` is added, changed or removed. */
  watch(): void {
    if (this.watcher || this.closed) return;
    if (!this.loaded) this.load();
    try {
      mkdirSync(this.buildersDir, { recursive: true });
      this.watcher = watch(this.buildersDir, { persistent: true }, () => this.schedule());
      this.watcher.on('error', (e) => this.stopWatching(e));
      this.watchProblem = null;
    } catch (e) {
      this.stopWatching(e);
    }
    this.schedule(); // catch anything that changed between load() and watch()
  }

  /** One builder's entry; `.definition` is what to run (null when the file was never valid). */
  get(name: string): BuilderEntry | undefined {
    const s = this.slots.get(name);
    return s && { name: s.name, definition: s.definition, error: s.error, file: s.file };
  }

  list(): BuilderEntry[] {
    return [...this.slots.values()]
      .sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0))
      .map(({ name, definition, error, file }) => ({ name, definition, error, file }));
  }

  /** Every current problem, one message per line, each naming its file. */
  errors(): string[] {
    const perFile = this.list().flatMap((e) => (e.error === null ? [] : e.error.split('\n')));
    return [...this.general, ...(this.watchProblem ? [this.watchProblem] : []), ...perFile];
  }

  close(): void {
    this.closed = true;
    if (this.timer) clearTimeout(this.timer);
    this.timer = null;
    this.watcher?.close();
    this.watcher = null;
  }

  private schedule(): void {
    if (this.closed) return;
    if (this.timer) clearTimeout(this.timer);
    this.timer = setTimeout(() => {
      this.timer = null;
      if (!this.closed) this.reload();
    }, this.debounceMs);
  }

  private stopWatching(e: unknown): void {
    this.watcher?.close();
    this.watcher = null;
    this.watchProblem = `builders/: not watching for changes (${(e as Error).message}); restart the master to pick up edits`;
    this.emit('change', this.list());
  }

  /** Rescans the directory; emits 'change' when any entry or general error differs. */
  private reload(): void {
    const before = { slots: this.list(), general: this.general };
    try {
      this.scan();
    } catch (e) {
      this.general = [`builders/: ${(e as Error).message}`];
    }
    if (!isDeepStrictEqual(before, { slots: this.list(), general: this.general })) this.emit('change', this.list());
  }

  private scan(): void {
    let files: string[];
    try {
      files = readdirSync(this.buildersDir, { withFileTypes: true })
        .filter((d) => (d.isFile() || d.isSymbolicLink()) && !d.name.startsWith('.') && builderNameFromPath(d.name) !== null)
        .map((d) => d.name)
        .sort((a, b) => compareFiles(a, b));
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code !== 'ENOENT') {
        // Keep every builder as it was: an unreadable dir is not a deletion.
        this.general = [`builders/: cannot read: ${(e as Error).message}`];
        return;
      }
      files = [];
    }
    const next = new Map<string, Slot>();
    const general: string[] = [];
    for (const fileName of files) {
      const name = builderNameFromPath(fileName) ?? fileName;
      const file = `builders/${fileName}`;
      const taken = next.get(name);
      if (taken) {
        general.push(`${file}: ignored, builder "${name}" is already defined by ${taken.file}`);
        continue;
      }
      const slot = this.readSlot(name, file);
      if (slot) next.set(name, slot);
    }
    this.slots = next;
    this.general = general;
  }

  /** One file's new state; null when it vanished while scanning. */
  private readSlot(name: string, file: string): Slot | null {
    const prev = this.slots.get(name);
    const lastGood = prev?.definition ?? null;
    const path = join(this.configDir, file);
    let text: string;
    try {
      const size = statSync(path).size;
      if (size > this.maxFileBytes) {
        return { name, file, definition: lastGood, error: `${file}: too large (${size} bytes; the limit is ${this.maxFileBytes})`, text: null };
      }
      text = readFileSync(path, 'utf8');
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code === 'ENOENT') return null;
      return { name, file, definition: lastGood, error: `${file}: cannot read: ${(e as Error).message}`, text: null };
    }
    if (prev && prev.file === file && prev.text === text) return prev;
    const r = parseBuilderFile(path, text, { configDir: this.configDir });
    return r.ok
      ? { name, file, definition: r.builder, error: null, text }
      : { name, file, definition: lastGood, error: r.errors.join('\n'), text };
  }
}

/** By builder name, `.yml` before `.yaml`, so `hello.yml` wins over `hello.yaml`. */
function compareFiles(a: string, b: string): number {
  const ka = [builderNameFromPath(a) ?? a, a.endsWith('.yml') ? 0 : 1] as const;
  const kb = [builderNameFromPath(b) ?? b, b.endsWith('.yml') ? 0 : 1] as const;
  if (ka[0] !== kb[0]) return ka[0] < kb[0] ? -1 : 1;
  return ka[1] - kb[1];
}
