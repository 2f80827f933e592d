import { readdir, readFile, stat } from 'node:fs/promises';
import { availableParallelism } from 'node:os';
import { join } from 'node:path';
import { hostEnv } from './launch.js';

/**
 * The answer to get_worker_info (buildbot_worker/base.py remote_getWorkerInfo): the files in
 * BASEDIR/info (admin, host, access_uri, …), os_* from /etc/os-release, and what the master
 * needs: basedir, system, environ, numcpus, version, worker_commands, delete_leftover_dirs.
 *
 * With the container executor `environ` is empty: commands do not see the volunteer's
 * environment, so neither does the master.
 */
export async function workerInfo(basedir: string, contained: boolean, commands: string[], version: string,
  deleteLeftoverDirs: boolean): Promise<Record<string, unknown>> {
  const info: Record<string, unknown> = {};
  const infoDir = join(basedir, 'info');
  for (const name of await readdir(infoDir).catch(() => [] as string[])) {
    const path = join(infoDir, name);
    if ((await stat(path).catch(() => null))?.isFile()) info[name] = await readFile(path, 'utf8');
  }
  const osRelease = await readFile('/etc/os-release', 'utf8').catch(() => '');
  for (const line of osRelease.split(/\r?\n/)) {
    if (!line || line.startsWith('#')) continue;
    const i = line.indexOf('=');
    if (i < 0) continue;
    const value = line.slice(i + 1);
    if (value) info[`os_${line.slice(0, i).toLowerCase()}`] = value.replace(/^"|"$/g, '');
  }
  info.environ = contained ? {} : hostEnv();
  info.system = 'posix';
  info.basedir = basedir;
  info.numcpus = availableParallelism();
  info.version = version;
  info.worker_commands = Object.fromEntries(commands.map((c) => [c, '3.1']));
  info.delete_leftover_dirs = deleteLeftoverDirs;
  return info;
}
