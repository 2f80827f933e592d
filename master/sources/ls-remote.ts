import { execFile } from 'node:child_process';
import { redactUrls } from './repo-url.js';

/** Branch name -> head commit. */
export type Heads = Map<string, string>;

export interface LsRemoteOptions {
  /** Kill git after this long (default 60 s). */
  timeoutMs?: number;
  signal?: AbortSignal;
}

const SHA = /^[0-9a-f]{40}(?:[0-9a-f]{24})?$/;

/**
 * The heads of a remote repository's branches, from `git ls-remote --heads` on the master
 * host: no clone, no prompt (auth failures fail fast). `entries` narrows the listing on the
 * server side (`refs/heads/ENTRY`, git's own wildcard match, a superset of ours); the caller
 * filters exactly. Errors say which repository and what git said, with credentials hidden.
 */
export function lsRemoteHeads(url: string, entries: readonly string[], opts: LsRemoteOptions = {}): Promise<Heads> {
  const timeoutMs = opts.timeoutMs ?? 60_000;
  // On the master's host, as the maintainer: builder files may only name https://, http:// and
  // git:// URLs (protocol/source-url.ts), and git is told so too.
  const args = ['-c', 'protocol.ext.allow=never', '-c', 'protocol.file.allow=never', 'ls-remote', '--heads', '--', url, ...entries.map((e) => `refs/heads/${e}`)];
  return new Promise((ok, fail) => {
    execFile('git', args, {
      timeout: timeoutMs, killSignal: 'SIGKILL', maxBuffer: 64 * 1024 * 1024, encoding: 'utf8',
      ...(opts.signal ? { signal: opts.signal } : {}),
      env: {
        ...process.env, GIT_TERMINAL_PROMPT: '0', GIT_ASKPASS: 'true', GIT_ALLOW_PROTOCOL: 'http:https:git',
        GIT_SSH_COMMAND: process.env.GIT_SSH_COMMAND ?? 'ssh -o BatchMode=yes',
      },
    }, (err, stdout, stderr) => {
      if (err) {
        const e = err as NodeJS.ErrnoException & { killed?: boolean; signal?: string | null };
        const what = `git ls-remote ${redactUrls(url)}`;
        if (e.code === 'ENOENT') return fail(new Error(`${what}: git is not installed on the master`));
        if (e.name === 'AbortError') return fail(new Error(`${what}: stopped`));
        if (e.killed || e.signal) return fail(new Error(`${what}: no answer within ${Math.round(timeoutMs / 1000)}s`));
        return fail(new Error(`${what}: ${summarize(stderr) || e.message}`));
      }
      ok(parseHeads(stdout));
    });
  });
}

/** `SHA<TAB>refs/heads/NAME` lines -> NAME -> SHA. */
export function parseHeads(text: string): Heads {
  const heads: Heads = new Map();
  for (const line of text.split('\n')) {
    const [sha, ref] = line.trim().split('\t');
    if (!sha || !ref || !SHA.test(sha) || !ref.startsWith('refs/heads/')) continue;
    heads.set(ref.slice('refs/heads/'.length), sha);
  }
  return heads;
}

/** git's own words, on one line: the `fatal:` lines, else the last line. */
function summarize(stderr: string): string {
  const lines = stderr.split('\n').map((l) => l.trim()).filter(Boolean);
  const fatal = lines.filter((l) => /^(fatal|error):/.test(l));
  return redactUrls((fatal.length ? fatal : lines.slice(-1)).join(' ').slice(0, 500));
}
