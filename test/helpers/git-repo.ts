import { execFileSync } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { tempDir } from './cluster.js';

/** A real git repository in a temp dir (branch `main`); `commit` returns the new sha. */
export function gitRepo() {
  const dir = tempDir('repo');
  const git = (...args: string[]): string =>
    execFileSync('git', ['-c', 'user.name=t', '-c', 'user.email=t@example.org', ...args], { cwd: dir, encoding: 'utf8' }).trim();
  git('init', '--quiet', '--initial-branch=main');
  let n = 0;
  const commit = (msg = `change ${++n}`): string => {
    writeFileSync(join(dir, 'file.txt'), `${msg}\n`);
    git('add', 'file.txt');
    git('commit', '--quiet', '-m', msg);
    return git('rev-parse', 'HEAD');
  };
  return { dir, url: `file://${dir}`, git, commit };
}
