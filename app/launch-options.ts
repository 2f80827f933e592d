/**
 * How the desktop app was asked to start: connect to a master at a URL, or start one on
 * this computer. Plain logic (no electron) so it can be tested.
 *
 *   crowdbake-app [--master URL]                                   connect (default http://127.0.0.1:8585)
 *   crowdbake-app --start-master CONFIG_DIR [--data DIR] [--listen HOST:PORT]
 *
 * CROWDBAKE_MASTER=URL does the same as --master. Unknown arguments (Chromium's switches) are ignored.
 */
import { appIdleSource } from './idle-report.js';

export const DEFAULT_MASTER = 'http://127.0.0.1:8585';

export type Launch =
  | { mode: 'connect'; masterUrl: string }
  | { mode: 'start'; configDir: string; dataDir: string | null; listen: string };

/** This computer's worker agent: the data dir whose control.json the tray follows, and whether the app starts it. */
export interface AgentLaunch {
  /** null: the default worker data dir. */
  dataDir: string | null;
  /** Given with --worker-token: the app runs `crowdbake worker --idle-source app` as its own process. */
  token: string | null;
}

/** `--worker-data DIR`, `--worker-token TOKEN` (or CROWDBAKE_WORKER_TOKEN). */
export function parseAgentLaunch(argv: readonly string[], env: Readonly<Record<string, string | undefined>> = {}): AgentLaunch {
  const token = valueOf(argv, '--worker-token') ?? env.CROWDBAKE_WORKER_TOKEN ?? null;
  if (token !== null && !/^cbw1\.[^.]+\..+$/.test(token)) throw new LaunchError('--worker-token must be a worker token (cbw1.NAME.SECRET) from `crowdbake token create`');
  return { dataDir: valueOf(argv, '--worker-data') ?? null, token };
}

/**
 * The arguments of the worker process the app starts (Electron's own Node runs the CLI). The
 * token is not among them (every local user can read a command line): it goes in the
 * environment, workerEnv().
 */
export function workerArgs(cli: string, masterUrl: string, _agent: AgentLaunch & { token: string }, dataDir: string): string[] {
  return [cli, 'worker', '--master', masterUrl, '--data', dataDir, '--idle-source', appIdleSource(process.platform, process.env)];
}

/** The environment that carries the worker's token to it (readable only by the same user). */
export function workerEnv(agent: AgentLaunch & { token: string }, base: NodeJS.ProcessEnv): NodeJS.ProcessEnv {
  return { ...base, CROWDBAKE_WORKER_TOKEN: agent.token };
}

export class LaunchError extends Error {}

function valueOf(argv: readonly string[], name: string): string | undefined {
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i]!;
    if (a === name) {
      const v = argv[i + 1];
      if (v === undefined || v.startsWith('--')) throw new LaunchError(`${name} needs a value`);
      return v;
    }
    if (a.startsWith(`${name}=`)) return a.slice(name.length + 1);
  }
  return undefined;
}

/** An http(s) URL without a trailing slash. */
export function normalizeMasterUrl(raw: string): string {
  let u: URL;
  try {
    u = new URL(raw);
  } catch {
    throw new LaunchError(`"${raw}" is not a URL (expected http://HOST:PORT)`);
  }
  if (u.protocol !== 'http:' && u.protocol !== 'https:') throw new LaunchError(`the master URL must be http or https, not ${u.protocol}`);
  return `${u.origin}${u.pathname.replace(/\/+$/, '')}`;
}

export function parseLaunch(argv: readonly string[], env: Readonly<Record<string, string | undefined>> = {}): Launch {
  const start = valueOf(argv, '--start-master');
  const master = valueOf(argv, '--master') ?? env.CROWDBAKE_MASTER;
  if (start !== undefined) {
    if (valueOf(argv, '--master') !== undefined) throw new LaunchError('use either --master or --start-master, not both');
    return { mode: 'start', configDir: start, dataDir: valueOf(argv, '--data') ?? null, listen: valueOf(argv, '--listen') ?? '127.0.0.1:8585' };
  }
  return { mode: 'connect', masterUrl: normalizeMasterUrl(master ?? DEFAULT_MASTER) };
}

/** The URL a started master announces on stdout ("… dashboard and API at URL/"), or null. */
export function masterUrlFromOutput(line: string): string | null {
  const m = /dashboard and API at (https?:\/\/\S+?)\/?\s*$/.exec(line);
  return m ? m[1]! : null;
}

export function dashboardUrl(masterUrl: string): string {
  return `${masterUrl}/`;
}
