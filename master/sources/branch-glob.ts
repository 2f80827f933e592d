/** Whether a `branches:` entry is a pattern rather than one branch name. */
export function isPattern(entry: string): boolean {
  return /[*?]/.test(entry);
}

/**
 * A predicate for branch names from `branches:` entries: `*` and `?` match within one
 * `/`-separated part of the name, `**` matches across parts; anything else is literal.
 */
export function branchMatcher(entries: readonly string[]): (branch: string) => boolean {
  const exact = new Set(entries.filter((e) => !isPattern(e)));
  const globs = entries.filter(isPattern).map(globToRegExp);
  return (branch) => exact.has(branch) || globs.some((re) => re.test(branch));
}

function globToRegExp(glob: string): RegExp {
  let re = '';
  for (let i = 0; i < glob.length; i++) {
    const c = glob[i]!;
    if (c === '*' && glob[i + 1] === '*') { re += '.*'; i++; }
    else if (c === '*') re += '[^/]*';
    else if (c === '?') re += '[^/]';
    else re += c.replace(/[.+^${}()|[\]\\]/g, '\\$&');
  }
  return new RegExp(`^${re}$`);
}
