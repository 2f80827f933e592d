import { lstat, opendir, stat } from 'node:fs/promises';

/**
 * Python's glob.glob(pattern, recursive=True) (Lib/glob.py, 3.11), which the `glob` command
 * answers with: `*`, `?` and `[...]` within a name, `**` for any depth, names starting with
 * "." only matched by patterns starting with ".", results in directory order (not sorted).
 * `followLinks: false` does not descend into symlinked directories for `**`.
 */

const MAGIC = /[*?[]/;

export async function pyGlob(pattern: string, followLinks = true): Promise<string[]> {
  const out: string[] = [];
  for await (const p of iglob(pattern, false, followLinks)) out.push(p);
  // glob('**') yields '' first for the top directory; Python drops it.
  return pattern.startsWith('**') && out[0] === '' ? out.slice(1) : out;
}

async function* iglob(pathname: string, dironly: boolean, follow: boolean): AsyncGenerator<string> {
  const [dir, base] = split(pathname);
  if (!MAGIC.test(pathname)) {
    if (base ? await exists(pathname) : await isDir(dir)) yield pathname;
    return;
  }
  if (!dir) {
    yield* inDir('', base, dironly, follow);
    return;
  }
  const dirs: AsyncIterable<string> | string[] = dir !== pathname && MAGIC.test(dir) ? iglob(dir, true, follow) : [dir];
  for await (const d of dirs) {
    for await (const name of inDir(d, base, dironly, follow)) yield osJoin(d, name);
  }
}

async function* inDir(dir: string, pattern: string, dironly: boolean, follow: boolean): AsyncGenerator<string> {
  if (!MAGIC.test(pattern)) {
    if (pattern ? await exists(joinPy(dir, pattern)) : await isDir(dir)) yield pattern;
    return;
  }
  if (pattern === '**') {
    yield '';
    yield* rlist(dir, dironly, follow);
    return;
  }
  const re = translate(pattern);
  for (const name of await list(dir, dironly)) {
    if (pattern[0] !== '.' && name[0] === '.') continue;
    if (re.test(name)) yield name;
  }
}

async function* rlist(dir: string, dironly: boolean, follow: boolean): AsyncGenerator<string> {
  for (const name of await list(dir, dironly)) {
    if (name[0] === '.') continue;
    yield name;
    const path = dir ? joinPy(dir, name) : name;
    if (!follow && (await lstat(path).catch(() => null))?.isSymbolicLink()) continue;
    for await (const sub of rlist(path, dironly, follow)) yield joinPy(name, sub);
  }
}

async function list(dir: string, dironly: boolean): Promise<string[]> {
  const names: string[] = [];
  try {
    const d = await opendir(dir || '.');
    for await (const e of d) {
      if (!dironly) names.push(e.name);
      else if (e.isDirectory() || (e.isSymbolicLink() && await isDir(joinPy(dir, e.name)))) names.push(e.name);
    }
  } catch { /* unreadable or not a directory: no names, as in Python */ }
  return names;
}

/** os.path.split */
function split(p: string): [string, string] {
  const i = p.lastIndexOf('/') + 1;
  let head = p.slice(0, i);
  if (head && head !== '/'.repeat(head.length)) head = head.replace(/\/+$/, '');
  return [head, p.slice(i)];
}

function joinPy(a: string, b: string): string {
  if (!a || !b) return a || b;
  return b.startsWith('/') ? b : a.endsWith('/') ? a + b : `${a}/${b}`;
}

/** os.path.join: an empty last part leaves a trailing "/". */
function osJoin(a: string, b: string): string {
  if (b.startsWith('/')) return b;
  return a === '' || a.endsWith('/') ? a + b : `${a}/${b}`;
}

async function exists(p: string): Promise<boolean> {
  return (await lstat(p).catch(() => null)) !== null;
}

async function isDir(p: string): Promise<boolean> {
  return (await stat(p || '.').catch(() => null))?.isDirectory() ?? false;
}

/** fnmatch.translate: one name pattern as an anchored regular expression. */
export function translate(pat: string): RegExp {
  let re = '';
  for (let i = 0; i < pat.length; i++) {
    const c = pat[i]!;
    if (c === '*') { if (!re.endsWith('.*')) re += '.*'; }
    else if (c === '?') re += '.';
    else if (c === '[') {
      let j = i + 1;
      if (pat[j] === '!') j++;
      if (pat[j] === ']') j++;
      while (j < pat.length && pat[j] !== ']') j++;
      if (j >= pat.length) { re += '\\['; continue; }
      let stuff = pat.slice(i + 1, j).replace(/\\/g, '\\\\');
      i = j;
      if (stuff === '') re += '(?!)';
      else if (stuff === '!') re += '.';
      else {
        if (stuff[0] === '!') stuff = `^${stuff.slice(1)}`;
        else if (stuff[0] === '^' || stuff[0] === '[') stuff = `\\${stuff}`;
        re += `[${stuff.replace(/\]/g, '\\]')}]`;
      }
    } else re += c.replace(/[.*+?^${}()|[\]\\/-]/g, '\\$&');
  }
  return new RegExp(`^(?:${re})$`, 's');
}

