import { execFile } from 'node:child_process';
import { lstat, readdir } from 'node:fs/promises';
import { dirname, join, resolve, sep } from 'node:path';
import { promisify } from 'node:util';
import { HostLauncher, hostEnv, type Launched, type Launcher, type LaunchSpec } from './launch.js';

/**
 * `git` on the host for the container executor (a busybox container has no git). The checkout
 * it works on is also the container's /work, which the build's own code can write: a
 * .git/config with core.fsmonitor, a hook, a filter driver or a gitfile pointing elsewhere
 * would make the next host git run code on the volunteer's machine. So before each host git
 * command the repository is checked: .git must be a plain directory whose config files (also
 * those of submodules) hold only harmless keys; git runs with hooks off, no bare-repository
 * discovery, and stops looking for a repository at the basedir.
 */

const execFileAsync = promisify(execFile);

/** Configuration git accepts in a checkout we run git on from the host (lower-case names). */
const SAFE_KEYS = [
  /^core\.(repositoryformatversion|filemode|bare|logallrefupdates|symlinks|ignorecase|precomposeunicode|autocrlf|eol|safecrlf|sharedrepository)$/,
  /^remote\.[^=]+\.(url|pushurl|fetch|tagopt|mirror|prune|promisor|partialclonefilter)$/,
  /^branch\.[^=]+\.(remote|merge|rebase)$/,
  /^submodule\.[^=]+\.(url|active|branch|update|shallow|ignore)$/,
  /^(user\.(name|email)|gc\.(auto|autodetach)|extensions\.(objectformat|partialclone)|lfs\.repositoryformatversion)$/,
  /^(init\.defaultbranch|pull\.rebase|fetch\.recursesubmodules|protocol\.version|clean\.requireforce|advice\.[a-z]+|color\.[a-z.]+)$/,
];
/** Master-supplied options of git that run programs or read other configuration. */
const UNSAFE_OPTION = /^(--upload-pack|--receive-pack|--exec|--config-env|--template|-u$|--exec-path)/;
const UNSAFE_CONFIG = /^(core\.(sshcommand|fsmonitor|hookspath|pager|editor|askpass|gitproxy|worktree)|include|includeif|filter\.|diff\.|credential|alias\.|sequence\.editor|gpg\.|uploadpack\.|.*\.(uploadpack|receivepack))/i;
const DROPPED_ENV = /^GIT_(DIR|WORK_TREE|COMMON_DIR|CONFIG.*|SSH.*|ASKPASS|EDITOR|PAGER|EXTERNAL_DIFF|EXEC_PATH|TEMPLATE_DIR|PROXY_COMMAND|CEILING_DIRECTORIES|INDEX_FILE|OBJECT_DIRECTORY|ALTERNATE_OBJECT_DIRECTORIES)$/;

export function isHostGit(argv: string[] | string, hostCommands: readonly string[]): boolean {
  if (typeof argv === 'string') return false;
  const cmd = argv[0] ?? '';
  return hostCommands.includes(cmd.slice(cmd.lastIndexOf('/') + 1));
}

export class HostGitLauncher implements Launcher {
  private readonly host = new HostLauncher();

  constructor(private readonly basedir: string, private readonly builderDir: string) {}

  async baseEnv(): Promise<Record<string, string>> {
    const env: Record<string, string> = {};
    for (const [k, v] of Object.entries(hostEnv())) if (!DROPPED_ENV.test(k)) env[k] = v;
    return { ...env, ...this.hardening() };
  }

  async launch(spec: LaunchSpec): Promise<Launched> {
    for (let i = 1; i < spec.argv.length; i++) {
      const a = spec.argv[i]!;
      if (UNSAFE_OPTION.test(a)) throw new Error(`refusing to run git on the host with option ${a}`);
      if ((a === '-c' || a === '--config') && UNSAFE_CONFIG.test(spec.argv[i + 1] ?? '')) {
        throw new Error(`refusing to run git on the host with -c ${(spec.argv[i + 1] ?? '').split('=')[0]}`);
      }
    }
    await this.checkRepository(resolve(spec.cwd));
    const env = Object.fromEntries(Object.entries(spec.env).filter(([k]) => !DROPPED_ENV.test(k)));
    return this.host.launch({ ...spec, env: { ...env, ...this.hardening() } });
  }

  private hardening(): Record<string, string> {
    const config: [string, string][] = [['core.hooksPath', '/dev/null'], ['core.fsmonitor', 'false'], ['safe.bareRepository', 'explicit']];
    const env: Record<string, string> = { GIT_CEILING_DIRECTORIES: this.basedir, GIT_CONFIG_COUNT: String(config.length) };
    config.forEach(([k, v], i) => { env[`GIT_CONFIG_KEY_${i}`] = k; env[`GIT_CONFIG_VALUE_${i}`] = v; });
    return env;
  }

  /** The repository git would find from `cwd` (up to the builder directory) must be safe to use. */
  private async checkRepository(cwd: string): Promise<void> {
    for (let dir = cwd; dir === this.builderDir || dir.startsWith(this.builderDir + sep); dir = dirname(dir)) {
      const dotgit = join(dir, '.git');
      const st = await lstat(dotgit).catch(() => null);
      if (st) {
        if (!st.isDirectory()) throw new Error(`refusing to run git on the host: ${dotgit} is not a plain directory (a gitfile or symlink could point outside the build)`);
        for (const f of ['commondir', 'objects/info/alternates']) {
          if (await lstat(join(dotgit, f)).catch(() => null)) throw new Error(`refusing to run git on the host: ${join(dotgit, f)} points git at other directories`);
        }
        for (const config of await configFiles(dotgit)) await checkConfig(config);
        return;
      }
      if (dir === this.builderDir) return;
    }
  }
}

async function configFiles(dotgit: string): Promise<string[]> {
  const out: string[] = [];
  const config = join(dotgit, 'config');
  const st = await lstat(config).catch(() => null);
  if (st && !st.isFile()) throw new Error(`refusing to run git on the host: ${config} is not a regular file`);
  if (st) out.push(config);
  const walk = async (dir: string, depth: number): Promise<void> => {
    if (depth > 8) return;
    for (const e of await readdir(dir, { withFileTypes: true }).catch(() => [])) {
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

async function checkConfig(file: string): Promise<void> {
  const { stdout } = await execFileAsync('git', ['config', '--no-includes', '--file', file, '--list', '-z'], { env: { PATH: process.env.PATH ?? '/usr/bin:/bin' } });
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
