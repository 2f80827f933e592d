import { execFileSync } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { basename, join } from 'node:path';
import { startGitHttpServer, type GitHttpServer } from '../../master/sources/git-http-server.js';
import { tempDir } from './cluster.js';

/**
 * Builds fetch their sources over http(s) or git:// only, so test repositories are served by
 * one loopback smart-HTTP server per test process (its port is not kept alive by it), rooted
 * at a temp directory that holds every test repository.
 */
let shared: Promise<{ root: string; server: GitHttpServer }> | null = null;
export function gitServer(): Promise<{ root: string; server: GitHttpServer }> {
  shared ??= (async () => {
    const root = tempDir('git-root');
    process.once('exit', () => rmSync(root, { recursive: true, force: true }));
    return { root, server: await startGitHttpServer({ root }) };
  })();
  return shared;
}

/** A real git repository (branch `main`) served at `url` over HTTP on 127.0.0.1; `commit` returns the new sha. */
export async function gitRepo() {
  const { root, server } = await gitServer();
  const dir = mkdtempSync(join(root, 'repo-'));
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
  return { dir, url: server.urlOf(basename(dir)), git, commit };
}
