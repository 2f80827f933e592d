import { readdirSync } from 'node:fs';
import { join, relative, sep } from 'node:path';

/** Turns an artifact pattern (`dist/*.deb`, `out/**\/*.tar.gz`, `?`) into a regex over relative paths. */
export function globToRegExp(pattern: string): RegExp {
  let re = '';
  for (let i = 0; i < pattern.length; i++) {
    const c = pattern[i]!;
    if (c === '*' && pattern[i + 1] === '*') {
      re += pattern[i + 2] === '/' ? '(?:.*/)?' : '.*';
      i += pattern[i + 2] === '/' ? 2 : 1;
    } else if (c === '*') re += '[^/]*';
    else if (c === '?') re += '[^/]';
    else re += c.replace(/[.+^${}()|[\]\\]/g, '\\$&');
  }
  return new RegExp(`^${re}$`);
}

/** Regular files under `root` whose relative path matches one of the patterns, in sorted order. */
export function findFiles(root: string, patterns: string[]): string[] {
  if (patterns.length === 0) return [];
  const res = patterns.map(globToRegExp);
  const out: string[] = [];
  const walk = (dir: string) => {
    for (const e of readdirSync(dir, { withFileTypes: true })) {
      const p = join(dir, e.name);
      if (e.isDirectory()) walk(p);
      else if (e.isFile()) {
        const rel = relative(root, p).split(sep).join('/');
        if (res.some((r) => r.test(rel))) out.push(p);
      }
    }
  };
  walk(root);
  return out.sort();
}
