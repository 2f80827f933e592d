import { realpath } from 'node:fs/promises';
import { dirname, isAbsolute, relative, resolve, sep } from 'node:path';

/**
 * Which host paths a command may touch. With the host executor the master is trusted as the
 * stock worker trusts it: any path. With the container executor, the build's own code runs in
 * a container that can write anything in its builder directory — including symlinks — so
 * every path the worker itself opens on the host must lie in the basedir and, once symlinks
 * are resolved, stay inside the builder directory it names (basedir/<builddir>).
 */
export class PathPolicy {
  private realBase: string | undefined;

  constructor(readonly basedir: string, readonly confined: boolean) {}

  /** The basedir with symlinks resolved (the root real paths are compared to). */
  async realBasedir(): Promise<string> {
    this.realBase ??= await realpath(this.basedir);
    return this.realBase;
  }

  /**
   * Confined: the path with every symlink resolved, which must exist and lie inside its
   * builder directory (see check); open the result with safe-fs.ts openBeneath(realBasedir(), …)
   * so that the open itself follows nothing. Not confined: the path as given.
   */
  async resolveInside(path: string, what: string): Promise<string> {
    await this.check(path, what);
    if (!this.confined) return path;
    return realpath(path);
  }

  /** basedir/<first component of path under basedir>, or null for the basedir itself. */
  builderDir(path: string): string | null {
    const rel = relative(this.basedir, resolve(path));
    if (rel === '') return null;
    if (rel.startsWith('..') || isAbsolute(rel)) throw new Error(`${path} is outside the worker's basedir ${this.basedir}`);
    return resolve(this.basedir, rel.split(sep)[0]!);
  }

  /**
   * Returns the path if the command may use it. Confined: it must be inside the basedir, and
   * the deepest part of it that exists must resolve (symlinks followed) inside its builder
   * directory — or inside the basedir when it names the basedir or a builder directory itself.
   */
  async check(path: string, what: string): Promise<string> {
    if (!this.confined) return path;
    const abs = resolve(path);
    const builder = this.builderDir(abs);
    this.realBase ??= await realpath(this.basedir);
    const root = builder === null || builder === abs ? this.realBase : resolve(this.realBase, relative(this.basedir, builder));
    let probe = abs;
    for (;;) {
      const real = await realpath(probe).catch((e: NodeJS.ErrnoException) => (e.code === 'ENOENT' || e.code === 'ENOTDIR' ? null : Promise.reject(e)));
      if (real !== null) {
        // Nothing of the builder directory exists yet: all of it will be created fresh under the basedir.
        const fresh = probe === resolve(this.basedir) && real === this.realBase;
        if (!fresh && real !== root && !real.startsWith(root + sep)) {
          throw new Error(`${what} ${path} leads outside its builder directory (to ${real}); refused`);
        }
        return path;
      }
      const up = dirname(probe);
      if (up === probe) throw new Error(`${what} ${path}: no part of it exists`);
      probe = up;
    }
  }
}
