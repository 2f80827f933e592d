import { execFile } from 'node:child_process';
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join, resolve, sep } from 'node:path';
import { promisify } from 'node:util';
import { HostLauncher, type Launched, type Launcher, type LaunchSpec } from './launch.js';
import type { PathPolicy } from './paths.js';
import { lstatBeneath, readdirBeneath, readFileBeneath } from './safe-fs.js';

/**
 * `git` on the host for the container executor (a busybox container has no git). WHERE IT
 * RUNS: on the volunteer's computer, as the volunteer, in the builder directory, while that
 * builder's container is frozen (worker.ts runs every host-side command of a builder through
 * ContainerPool.quiesce, so no process of the build can swap a path while git works).
 *
 * WHY THAT IS SAFE — everything the master or the build controls is allowlisted:
 * - The command: only a master argv whose argv[0] is exactly `git` (not `./git`, not a path,
 *   never a shell string), and what runs is always GIT_BINARY, a path this worker chose: the
 *   master's PATH is never consulted.
 * - The environment: a fixed allowlist (GIT_ENV below: fixed PATH, HOME an empty directory of
 *   ours, no system or global git configuration, no terminal prompts, transports http, https
 *   and git only — so no local paths, file://, ssh or ext::). Of the master's `env` only
 *   MASTER_ENV_KEYS with plain values pass (author/committer names, dates, locale, TZ); nothing
 *   of the volunteer's own environment reaches git, its credentials, agents or config.
 * - The subcommand: GIT_SUBCOMMANDS (what BuildBot's source and git steps send); options that
 *   run programs, read other configuration or point git at other directories are refused;
 *   `-c` only sets SAFE_KEYS; every argument that names an existing path (absolute or
 *   relative, symlinks resolved) must stay in the builder directory; a local repository or
 *   file:// URL is refused with a message saying why.
 * - The checkout the container can write: .git must be a plain directory without `commondir`
 *   or `objects/info/alternates`; its config files (also submodules' and worktrees') may hold
 *   only SAFE_KEYS (read without following symlinks, safe-fs.ts); git runs with hooks off,
 *   core.fsmonitor off, no bare-repository discovery, and stops looking for a repository at
 *   the basedir.
 */

/** The only program this launcher runs. */
export const GIT_BINARY = '/usr/bin/git';

const execFileAsync = promisify(execFile);

/** Configuration git accepts in a checkout we run git on from the host, and in `-c` (lower-case names). */
const SAFE_KEYS = [
  /^core\.(repositoryformatversion|filemode|bare|logallrefupdates|symlinks|ignorecase|precomposeunicode|autocrlf|eol|safecrlf|sharedrepository)$/,
  /^remote\.[^=]+\.(url|pushurl|fetch|tagopt|mirror|prune|promisor|partialclonefilter)$/,
  /^branch\.[^=]+\.(remote|merge|rebase)$/,
  /^submodule\.[^=]+\.(url|active|branch|update|shallow|ignore)$/,
  /^(user\.(name|email)|gc\.(auto|autodetach)|extensions\.(objectformat|partialclone)|lfs\.repositoryformatversion)$/,
  /^(init\.defaultbranch|pull\.rebase|fetch\.recursesubmodules|protocol\.version|clean\.requireforce|advice\.[a-z]+|color\.[a-z.]+)$/,
];
/** Further keys a master may set with `-c` for one command (transport tuning; none runs a program). */
const SAFE_COMMAND_KEYS = /^(http\.(sslverify|postbuffer|lowspeedlimit|lowspeedtime|version)|fetch\.(prune|parallel)|submodule\.(recurse|fetchjobs)|checkout\.workers|pack\.threads|core\.(compression|longpaths))$/;

/** Subcommands BuildBot's Git, GitPush, GitTag and GitCommit steps use, and read-only inspection. */
const GIT_SUBCOMMANDS = new Set([
  'clone', 'fetch', 'pull', 'checkout', 'switch', 'reset', 'clean', 'rev-parse', 'rev-list', 'log', 'show', 'describe',
  'status', 'diff', 'branch', 'tag', 'remote', 'submodule', 'cat-file', 'ls-remote', 'ls-files', 'ls-tree', 'init',
  'add', 'rm', 'mv', 'commit', 'push', 'merge', 'merge-base', 'cherry-pick', 'revert', 'apply', 'update-index',
  'symbolic-ref', 'show-ref', 'for-each-ref', 'name-rev', 'shortlog', 'gc', 'config', 'version', 'stash', 'sparse-checkout',
]);
/** Long options (anywhere; git also takes any unambiguous abbreviation) that run programs, read other configuration or repositories, sign with keys, or point git at other directories. */
const UNSAFE_LONG = ['--upload-pack', '--receive-pack', '--exec', '--config-env', '--template', '--exec-path', '--git-dir', '--work-tree',
  '--separate-git-dir', '--reference', '--reference-if-able', '--gpg-sign', '--signed', '--sign', '--local-user', '--interactive',
  '--global', '--system', '--ext-diff', '--open-files-in-pager', '--remote', '--file', '--blob', '--includes', '--super-prefix'];
/** Short option letters that do the same, per subcommand (clone -u is --upload-pack, tag -s/-u sign, commit -S signs). */
const UNSAFE_SHORT: Record<string, RegExp> = {
  clone: /u/, fetch: /u/, pull: /[uS]/, 'ls-remote': /u/, tag: /[suS]/, commit: /S/, merge: /S/, 'cherry-pick': /S/, revert: /S/,
  rebase: /[xS]/, push: /S/, grep: /O/, stash: /S/,
};
/** Options whose next argument is their value (so it is not a positional argument). */
const TAKES_VALUE = /^(--filter|--origin|--branch|--depth|--config|-b|-o|-c|--jobs|-j|--shallow-since|--shallow-exclude|--format|-m|--message|--author|-n|--max-count)$/;

/** What of the master's `env` may reach host git: names that only label commits or choose a language. */
const MASTER_ENV_KEYS = /^(GIT_(AUTHOR|COMMITTER)_(NAME|EMAIL|DATE)|TZ|LANG|LANGUAGE|LC_[A-Z]+)$/;
/** Values of those: no paths (a locale or TZ named by path would read host files), no control characters. */
const PLAIN_VALUE = /^[^\0\n/:]{0,200}$/;

let emptyHome: string | undefined;
/** An empty directory of ours, as git's HOME: nothing of the volunteer's home is read. */
function gitHome(): string {
  emptyHome ??= mkdtempSync(join(tmpdir(), 'crowdbake-git-home-'));
  return emptyHome;
}

/** The complete environment host git gets, before the master's allowlisted keys. */
function gitEnv(basedir: string): Record<string, string> {
  const config: [string, string][] = [['core.hooksPath', '/dev/null'], ['core.fsmonitor', 'false'], ['safe.bareRepository', 'explicit'],
    ['protocol.file.allow', 'never'], ['protocol.ext.allow', 'never'], ['credential.helper', ''], ['core.sshCommand', 'false']];
  const env: Record<string, string> = {
    PATH: '/usr/bin:/bin', HOME: gitHome(), LANG: 'C.UTF-8', LC_ALL: 'C.UTF-8',
    GIT_CONFIG_NOSYSTEM: '1', GIT_CONFIG_GLOBAL: '/dev/null', GIT_TERMINAL_PROMPT: '0', GIT_ALLOW_PROTOCOL: 'http:https:git',
    GIT_EDITOR: ':', GIT_SEQUENCE_EDITOR: ':', GIT_PAGER: 'cat',
    GIT_CEILING_DIRECTORIES: basedir, GIT_CONFIG_COUNT: String(config.length),
  };
  config.forEach(([k, v], i) => { env[`GIT_CONFIG_KEY_${i}`] = k; env[`GIT_CONFIG_VALUE_${i}`] = v; });
  return env;
}

/** The master's `env` → what host git may see of it (allowlist; everything else dropped). */
export function gitEnvFromMaster(masterEnv: Record<string, string>, basedir: string): Record<string, string> {
  const out = gitEnv(basedir);
  for (const [k, v] of Object.entries(masterEnv)) if (MASTER_ENV_KEYS.test(k) && PLAIN_VALUE.test(v)) out[k] = v;
  return out;
}

/** True when the master's command is host git: an argv whose argv[0] is exactly `git` (never a path). */
export function isHostGit(argv: string[] | string, hostCommands: readonly string[]): boolean {
  return typeof argv !== 'string' && argv[0] === 'git' && hostCommands.includes('git');
}

/** A local repository (path or file://), which host git must not read: the volunteer's own repositories. */
function localRepository(a: string): boolean {
  return /^file:/i.test(a) || a.startsWith('/') || a.startsWith('./') || a.startsWith('../') || a === '.' || a === '..' || a.startsWith('~');
}

/** Throws when host git must not run this argv; names the argument and why. */
export function checkGitArgv(argv: readonly string[]): void {
  let i = 1;
  // Global options before the subcommand: only -c with an allowlisted key, and the harmless flags.
  for (; i < argv.length && argv[i]!.startsWith('-'); i++) {
    const a = argv[i]!;
    if (a === '--version' || a === '--no-pager' || a === '--literal-pathspecs' || a === '--no-replace-objects' || a === '--no-optional-locks') continue;
    if (a === '-c') { checkConfigOption(argv[++i] ?? ''); continue; }
    throw new Error(`refusing to run git on the host with the global option ${a}`);
  }
  const sub = argv[i];
  if (sub === undefined) return;
  if (!GIT_SUBCOMMANDS.has(sub)) throw new Error(`refusing to run git on the host: the subcommand "${sub}" is not one this worker runs on the host (use an environment with git to run it in the container)`);
  const rest = argv.slice(i + 1);
  if (sub === 'submodule' && rest.includes('foreach')) {
    // BuildBot's Git step sends `submodule foreach --recursive 'git clean -f -f -d [-x]'`; foreach runs a shell.
    const cmd = rest.filter((a) => a !== 'foreach' && a !== '--recursive' && a !== '--quiet');
    if (cmd.length !== 1 || !/^git clean( -[fdxq])+$/.test(cmd[0]!)) throw new Error('refusing to run git on the host: submodule foreach runs a shell; only "git clean -f -f -d [-x]" is allowed');
  }
  if (sub === 'config' && rest.some((a) => !a.startsWith('-')) && !rest.some((a) => /^(--get|--get-all|--get-regexp|-l|--list)$/.test(a))) {
    const key = rest.find((a) => !a.startsWith('-'))!;
    checkConfigOption(`${key}=`);
  }
  const positional: string[] = [];
  for (let j = 0; j < rest.length; j++) {
    const a = rest[j]!;
    if (a === '--') { positional.push(...rest.slice(j + 1)); break; }
    if (a.startsWith('--')) {
      const name = a.split('=')[0]!;
      if (name.length > 3 && UNSAFE_LONG.some((u) => u.startsWith(name))) throw new Error(`refusing to run git on the host with option ${name}`);
    } else if (a.startsWith('-') && a.length > 1 && UNSAFE_SHORT[sub]?.test(a.slice(1, 2))) {
      throw new Error(`refusing to run git on the host with option ${a.slice(0, 2)} of git ${sub}`);
    }
    if (a === '--config' || (a === '-c' && sub === 'clone')) checkConfigOption(rest[j + 1] ?? '');
    else if (a.startsWith('--config=')) checkConfigOption(a.slice('--config='.length));
    if (TAKES_VALUE.test(a)) { j++; continue; }
    if (!a.startsWith('-')) positional.push(a);
  }
  if (/^(clone|fetch|pull|ls-remote|remote|submodule|push)$/.test(sub)) {
    // clone's second positional argument is the destination directory ("." or a path; checked below as every path).
    const repositories = sub === 'clone' ? positional.slice(0, 1) : positional;
    for (const a of repositories) {
      if (localRepository(a)) throw new Error(`refusing to run git on the host: "${a}" is a local repository; only remote URLs (http, https, git) are fetched`);
    }
  }
}

function checkConfigOption(kv: string): void {
  const key = kv.split('=')[0]!.toLowerCase();
  if (!SAFE_KEYS.some((re) => re.test(key)) && !SAFE_COMMAND_KEYS.test(key)) {
    throw new Error(`refusing to run git on the host with -c ${key}: not a setting this worker allows`);
  }
}

export class HostGitLauncher implements Launcher {
  private readonly host = new HostLauncher();

  /** `hold`: freezes the builder's container until the returned release is called (ContainerPool.hold). */
  constructor(private readonly basedir: string, private readonly builderDir: string, private readonly paths: PathPolicy,
    private readonly hold: () => Promise<() => Promise<void>>) {}

  /** The base for the master's env overrides and ${VAR}: ours, never the volunteer's environment. */
  async baseEnv(): Promise<Record<string, string>> {
    return gitEnv(this.basedir);
  }

  /** The allowlist: what host git gets of the master's env (the log header shows this). */
  effectiveEnv(env: Record<string, string>): Record<string, string> {
    return gitEnvFromMaster(env, this.basedir);
  }

  async launch(spec: LaunchSpec): Promise<Launched> {
    if (spec.argv[0] !== 'git') throw new Error(`refusing to run ${spec.argv[0] ?? ''} on the host: only "git" runs there`);
    checkGitArgv(spec.argv);
    // From the checks to git's exit, the build's container stays frozen: nothing can swap a path.
    const release = await this.hold();
    try {
      const launched = await this.start(spec);
      void launched.exited.finally(() => release()).catch(() => {});
      return launched;
    } catch (e) {
      await release();
      throw e;
    }
  }

  private async start(spec: LaunchSpec): Promise<Launched> {
    // Every argument naming an existing path (and every --opt=value) must stay in the builder directory.
    for (const a of spec.argv.slice(1)) {
      for (const p of a.startsWith('-') ? (a.includes('=') ? [a.slice(a.indexOf('=') + 1)] : []) : [a]) {
        if (!p || /^[a-z][a-z0-9+.-]*:\/\//i.test(p)) continue;
        const abs = resolve(spec.cwd, p);
        if (abs !== this.builderDir && !abs.startsWith(this.builderDir + sep)) {
          if (p.startsWith('/') || p.split('/').includes('..')) throw new Error(`refusing to run git on the host: the argument ${a} names a path outside the builder directory`);
          continue;
        }
        await this.paths.check(abs, `git argument ${a}`).catch((e: Error) => { throw new Error(`refusing to run git on the host: ${e.message}`); });
      }
    }
    await this.checkRepository(resolve(spec.cwd));
    return this.host.launch({ ...spec, argv: [GIT_BINARY, ...spec.argv.slice(1)], env: gitEnvFromMaster(spec.env, this.basedir) });
  }

  /** The repository git would find from `cwd` (up to the builder directory) must be safe to use. */
  private async checkRepository(cwd: string): Promise<void> {
    for (let dir = cwd; dir === this.builderDir || dir.startsWith(this.builderDir + sep); dir = dirname(dir)) {
      const dotgit = join(dir, '.git');
      const st = await lstatBeneath(this.basedir, dotgit);
      if (st) {
        if (!st.isDirectory()) throw new Error(`refusing to run git on the host: ${dotgit} is not a plain directory (a gitfile or symlink could point outside the build)`);
        for (const f of ['commondir', 'objects/info/alternates']) {
          if (await lstatBeneath(this.basedir, join(dotgit, f))) throw new Error(`refusing to run git on the host: ${join(dotgit, f)} points git at other directories`);
        }
        for (const config of await this.configFiles(dotgit)) await this.checkConfig(config);
        return;
      }
      if (dir === this.builderDir) return;
    }
  }

  private async configFiles(dotgit: string): Promise<string[]> {
    const out: string[] = [];
    const config = join(dotgit, 'config');
    const st = await lstatBeneath(this.basedir, config);
    if (st && !st.isFile()) throw new Error(`refusing to run git on the host: ${config} is not a regular file`);
    if (st) out.push(config);
    const walk = async (dir: string, depth: number): Promise<void> => {
      if (depth > 8) return;
      let entries: ReturnType<typeof readdirBeneath> = [];
      try {
        entries = readdirBeneath(this.basedir, dir);
      } catch (e) {
        if ((e as NodeJS.ErrnoException).code !== 'ENOENT') throw new Error(`refusing to run git on the host: ${dir} is not a plain directory (${(e as Error).message})`);
      }
      for (const e of entries) {
        const p = join(dir, e.name);
        if (e.name === 'config' || e.name === 'config.worktree') {
          if (!e.isFile()) throw new Error(`refusing to run git on the host: ${p} is not a regular file`);
          out.push(p);
        } else if (e.isDirectory() && e.name !== 'objects' && e.name !== 'refs' && e.name !== 'logs') await walk(p, depth + 1);
      }
    };
    await walk(join(dotgit, 'modules'), 0);
    await walk(join(dotgit, 'worktrees'), 0);
    return out;
  }

  /** Checks one config file, read through a descriptor (no symlink followed) and parsed by git from stdin. */
  private async checkConfig(file: string): Promise<void> {
    const text = await readFileBeneath(this.basedir, file, 4 * 1024 * 1024);
    const child = execFileAsync(GIT_BINARY, ['config', '--no-includes', '--file', '-', '--list', '-z'], { env: gitEnv(this.basedir), cwd: gitHome() });
    child.child.stdin?.end(text);
    const { stdout } = await child;
    for (const entry of stdout.split('\0')) {
      if (!entry) continue;
      const nl = entry.indexOf('\n');
      const key = (nl < 0 ? entry : entry.slice(0, nl)).toLowerCase();
      const value = nl < 0 ? '' : entry.slice(nl + 1);
      if (!SAFE_KEYS.some((re) => re.test(key)) || (key.endsWith('.update') && value.startsWith('!'))) {
        throw new Error(`refusing to run git on the host: ${file} sets ${key}, which this worker does not allow in a checkout the build can write (use an environment with git to run git in the container)`);
      }
    }
  }
}
