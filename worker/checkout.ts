/**
 * The build's checkout: clones `spec.source.git` into the build's workdir and checks out the
 * exact revision.
 *
 * WHERE IT RUNS AND WHY THAT IS SAFE. The source URL and the revision come from the master,
 * and git runs on the volunteer's computer (on the host: build images such as busybox have
 * no git), before any sandbox exists. So nothing of the volunteer's may take part:
 * - the URL is checked again here, whatever the master said (protocol/source-url.ts): only
 *   https://, http:// and git:// of a remote host — no local path, file://, ssh or scp-like
 *   address (their keys and agent), no ext::/fd:: transports, nothing git could read as an
 *   option; a host that is this computer's loopback only when the master is itself on
 *   loopback (a developer's own farm), so a master cannot reach the volunteer's local
 *   services;
 * - git runs with an allowlisted environment (PATH, LANG, a fresh empty HOME, and the
 *   volunteer's proxy and CA variables; no SSH_AUTH_SOCK, no GIT_* of the volunteer's), no
 *   system or global config (GIT_CONFIG_NOSYSTEM, GIT_CONFIG_GLOBAL=/dev/null), so no
 *   ~/.gitconfig, credential
 *   helper, `url.*.insteadOf`, proxy or askpass of theirs; `-c` options on every command
 *   reset the credential helpers, forbid the file and every other protocol, disable hooks,
 *   fsmonitor, redirects and submodules, check every received object, and never prompt;
 * - the clone uses no hard links into anything local (nothing local is allowed) and templates
 *   none (`--template=`): the workdir holds only what the remote sent;
 * - what is logged (the URL, git's stderr, errors) has credentials redacted; only the spec
 *   (which the worker must use) carries them.
 */
import { spawn } from 'node:child_process';
import { lookup } from 'node:dns/promises';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { StringDecoder } from 'node:string_decoder';
import type { BuildSpec } from '../protocol/build-spec.js';
import { isLoopbackHost, redactUrl, redactUrls, sourceUrlProblem } from '../protocol/source-url.js';

export interface CheckoutLog {
  line(text: string): void;
  write(chunk: Buffer, stream: 'stdout' | 'stderr'): void | Promise<void>;
}

export interface CheckoutOptions {
  /** The master this worker serves; a loopback source is fetched only when the master is on loopback too. */
  masterUrl?: string;
}

/** A checkout the worker refused before running git: the build ends in error with this reason. */
export class CheckoutRefused extends Error {}

/** Options given to every git command of the checkout (see the top of this file). */
export const HARDENED_GIT_CONFIG = [
  'credential.helper=', 'core.askPass=', 'core.sshCommand=false', 'core.hooksPath=/dev/null', 'core.fsmonitor=false',
  'protocol.allow=never', 'protocol.https.allow=always', 'protocol.http.allow=always', 'protocol.git.allow=always',
  'protocol.file.allow=never', 'protocol.ext.allow=never', 'http.followRedirects=false', 'transfer.fsckObjects=true',
  'submodule.recurse=false', 'fetch.recurseSubmodules=false', 'core.symlinks=true', 'gc.auto=0', 'maintenance.auto=false',
  'init.templateDir=', 'advice.detachedHead=false',
].flatMap((kv) => ['-c', kv]);

/** The whole environment of the checkout's git processes: nothing of the volunteer's. */
export function gitEnvironment(home: string): NodeJS.ProcessEnv {
  return {
    PATH: '/usr/local/bin:/usr/bin:/bin',
    HOME: home,
    XDG_CONFIG_HOME: join(home, '.config'),
    LANG: 'C',
    LC_ALL: 'C',
    GIT_CONFIG_NOSYSTEM: '1',
    GIT_CONFIG_GLOBAL: '/dev/null',
    GIT_TERMINAL_PROMPT: '0',
    GIT_ALLOW_PROTOCOL: 'http:https:git',
    GIT_PROTOCOL_FROM_USER: '0',
    // The volunteer's own proxy and CA settings, so that a checkout works behind their proxy;
    // they name nothing the master chose and carry nothing to it.
    ...pick(process.env, ['http_proxy', 'https_proxy', 'no_proxy', 'HTTP_PROXY', 'HTTPS_PROXY', 'NO_PROXY', 'SSL_CERT_FILE', 'SSL_CERT_DIR']),
  };
}

function pick(env: NodeJS.ProcessEnv, names: string[]): NodeJS.ProcessEnv {
  const out: NodeJS.ProcessEnv = {};
  for (const n of names) if (env[n] !== undefined) out[n] = env[n];
  return out;
}

/**
 * Why this worker will not fetch `url` for a master at `masterUrl`, or null. The URL rule
 * (also the schema's) and the loopback rule: a source on this computer's loopback — by its
 * literal name, or a name that resolves to it — only for a master on loopback.
 */
export async function checkoutProblem(url: string, masterUrl: string | undefined): Promise<string | null> {
  const problem = sourceUrlProblem(url);
  if (problem) return `source ${problem}`;
  const host = new URL(url).hostname;
  const masterHost = masterUrl ? hostOf(masterUrl) : null;
  const masterLocal = masterHost !== null && isLoopbackHost(masterHost);
  if (masterLocal) return null;
  let local = isLoopbackHost(host);
  if (!local && !host.startsWith('[') && !/^[\d.]+$/.test(host)) {
    // Best effort against a DNS name that points at loopback; git resolves again on its own.
    const addrs = await lookup(host, { all: true }).catch(() => []);
    local = addrs.some((a) => isLoopbackHost(a.address));
  }
  if (local) {
    return `source ${redactUrl(url)} is on this computer's loopback, and the master (${masterUrl ? redactUrl(masterUrl) : 'unknown'}) is not: a master may not reach the volunteer's local services`;
  }
  return null;
}

function hostOf(url: string): string | null {
  try { return new URL(url).hostname; } catch { return null; }
}

/**
 * Clones the build's branch on the host into the workdir and checks out exactly the requested
 * revision: a commit the clone does not hold (no branch head reaches it) is fetched by name,
 * and a full sha must come out as itself. Returns the commit's full sha.
 */
export async function checkout(spec: BuildSpec, workdir: string, log: CheckoutLog, signal: AbortSignal, opts: CheckoutOptions = {}): Promise<string> {
  const src = spec.source!;
  const shown = redactUrl(src.git);
  const want = spec.revision ?? src.branch;
  if (want.startsWith('-')) throw new CheckoutRefused(`checkout refused: revision "${want}" must not start with "-"`);
  if (src.branch.startsWith('-')) throw new CheckoutRefused(`checkout refused: branch "${src.branch}" must not start with "-"`);
  const refused = await checkoutProblem(src.git, opts.masterUrl);
  if (refused) throw new CheckoutRefused(`checkout refused: ${refused}`);
  log.line(`checkout ${shown} branch ${src.branch} at ${want}`);
  const home = mkdtempSync(join(tmpdir(), 'crowdbake-git-home-'));
  try {
    const git = (args: string[], soft = false) => runGit(args, workdir, home, log, signal, soft);
    await git(['clone', '--quiet', '--no-checkout', '--no-recurse-submodules', '--template=', '--branch', src.branch, '--', src.git, '.']);
    const resolve = async (rev: string) => (await git(['rev-parse', '--verify', '--quiet', `${rev}^{commit}`], true)).trim() || null;
    let commit = await resolve(want) ?? await resolve(`origin/${want}`);
    if (!commit) {
      log.line(`${want} is not on a branch head; fetching it`);
      await git(['fetch', '--quiet', '--no-recurse-submodules', 'origin', '--', want]);
      commit = await resolve('FETCH_HEAD');
    }
    if (!commit) throw new Error(`checkout failed: ${want} is not a commit of ${shown}`);
    if (/^[0-9a-f]{40}$/i.test(want) && commit !== want.toLowerCase()) {
      throw new Error(`checkout failed: asked for ${want}, the repository gave ${commit}`);
    }
    await git(['checkout', '--quiet', '--detach', commit]);
    const head = (await git(['rev-parse', 'HEAD'])).trim();
    if (head !== commit) throw new Error(`checkout failed: HEAD is ${head}, not ${commit}`);
    log.line(`checked out ${head}`);
    return head;
  } finally {
    rmSync(home, { recursive: true, force: true });
  }
}

/** Runs git; its stderr goes to the build log, line by line with URLs redacted. `soft`: a non-zero exit gives "" instead of failing. */
function runGit(args: string[], cwd: string, home: string, log: CheckoutLog, signal: AbortSignal, soft: boolean): Promise<string> {
  return new Promise((ok, fail) => {
    const child = spawn('git', [...HARDENED_GIT_CONFIG, ...args], { cwd, signal, stdio: ['ignore', 'pipe', 'pipe'], env: gitEnvironment(home) });
    let out = '';
    let err = '';
    const emit = (text: string) => { if (text) void log.write(Buffer.from(redactUrls(text)), 'stderr'); };
    child.stdout.on('data', (c: Buffer) => { out += c.toString(); });
    const decoder = new StringDecoder('utf8');
    child.stderr.on('data', (c: Buffer) => {
      err += decoder.write(c);
      const end = Math.max(err.lastIndexOf('\n'), err.lastIndexOf('\r'));
      if (end < 0 && err.length < 4096) return;
      const cut = end < 0 ? err.length : end + 1;
      emit(err.slice(0, cut));
      err = err.slice(cut);
    });
    child.on('error', (e: NodeJS.ErrnoException) => {
      emit(err);
      err = '';
      fail(new Error(e.code === 'ENOENT' ? 'git is not installed on this worker' : `git ${args[0]}: ${e.message}`));
    });
    child.on('close', (code) => {
      emit(err);
      err = '';
      if (code === 0) ok(out);
      else if (soft) ok('');
      else fail(new Error(`checkout failed: git ${args[0]} exited with ${code}`));
    });
  });
}
