import type { Preferences } from '../../protocol/control-api.js';
import { list, oneOf, parse, positiveNumber, required, secret, size, warnSecretOnCommandLine, str, UsageError, duration } from '../args.js';
import { join } from 'node:path';
import { defaultDataDir } from '../paths.js';
import { onSignals, untilSignal } from '../signals.js';
import { IDLE_SOURCE_CHOICES } from '../../worker/idle/detect-idle.js';
import { EXECUTOR_CHOICES } from '../../worker/executors/registry.js';

const HELP = `usage: crowdbake worker --master URL --token-file FILE [flags]
       crowdbake worker --data DIR [flags]   (every project joined with \`crowdbake join\`, by share)

  --master URL        the master: ws://HOST:PORT, wss://…, or its http(s):// base; several masters of
                      one farm (on one PostgreSQL) as URL1,URL2 or repeated: a worker whose master
                      goes away connects to the next and its running builds are adopted there
  --token-file FILE   a file holding the token from \`crowdbake token create\` on the master
                      (or $CROWDBAKE_WORKER_TOKEN; --token TOKEN works too, but other users
                      of this computer can read the command line)
  --name N            worker name (default: the name inside the token)
  --data DIR          work directories and local state (default: ${defaultDataDir('worker')})
  --bases-dir DIR     files a builder may use as its base by name (rootfs:NAME.tar, vm:NAME.qcow2);
                      no other file of this computer can be a base (default: DATA/bases)
  --executor KIND     auto | container | vm | host (default: auto = the isolated ones that work here;
                      host runs builds unsandboxed, only for your own trusted builders)
  --cpus N            at most N CPUs for builds
  --memory SIZE       at most this much memory per build (512m, 4g)
  --disk SIZE         at most this much disk
  --labels a,b        labels this worker offers builders
  --builds N          builds at a time (default 1)
  --warm N            environments kept warm for the container executor, one sandbox each, made
                      ahead while builds may run (default 1; 0: none)
  --when idle|always  build only while the desktop is idle, or always (default: idle)
  --idle-after DUR    idle time before builds start (default 3m)
  --pin sha256:HEX    the master's certificate fingerprint (wss://), from \`crowdbake token create\`;
                      remembered for later starts: any other certificate is refused
  --idle-source S     auto | mutter | wayland | x11 | logind | macos | windows | app | none (default auto:
                      from the session — Wayland: mutter (GNOME) or wayland (swayidle: KDE, wlroots), then
                      logind, never X11; X11: x11, then logind; \`crowdbake status\` says which and why)
  --interruption-url U  poll this instance metadata service (IMDSv2, e.g. http://169.254.169.254) for a
                      spot interruption notice; on one, the worker drains at once (cloud workers)

SIGTERM drains the worker: it takes no new builds, finishes those running (the master shows it
"draining") and exits 0. A second signal, or SIGINT, gives the running builds back at once (the
master requeues them, not counted as failed attempts) and exits. \`crowdbake drain\` does the same.

Serving an existing BuildBot (>= 3.7) master instead, as a msgpack_experimental_v7 worker:
  crowdbake worker --buildbot ws://HOST:PORT --name N --password-file FILE [--basedir DIR]
                   [--executor container|host] [--data DIR] [--when …] [--idle-after …]
                   [--idle-source …] [--cpus N] [--memory SIZE]
  --password-file F   the worker's password on the file's first line (or $CROWDBAKE_BUILDBOT_PASSWORD;
                      --password P works too, visible to other local users)
  --basedir DIR       builder directories (default: DATA/buildbot/N)
  --executor KIND     container (default): shell steps run in a podman sandbox with the
                      builder directory at /work, git runs on the host; host: everything on
                      this computer, as the stock buildbot-worker does
  The volunteer's rules apply as above: while the desktop is in use (or paused), running
  commands are frozen, their timeouts stopped, and new ones wait; the connection stays up.
  --cpus/--memory limit each container. Give each worker its own --data.

Flags that set preferences (--when, --idle-after, --cpus, --memory, --disk) are saved in
DATA/preferences.json; \`crowdbake limits\` changes them while the worker runs.
`;

export async function workerCommand(argv: string[]): Promise<number> {
  const { values } = parse(argv, {
    master: { type: 'string', multiple: true }, token: { type: 'string' }, name: { type: 'string' }, data: { type: 'string' },
    executor: { type: 'string' }, cpus: { type: 'string' }, memory: { type: 'string' }, disk: { type: 'string' },
    labels: { type: 'string' }, builds: { type: 'string' }, when: { type: 'string' }, 'idle-after': { type: 'string' },
    'idle-source': { type: 'string' }, pin: { type: 'string' }, buildbot: { type: 'string' }, password: { type: 'string' }, basedir: { type: 'string' },
    'token-file': { type: 'string' }, 'password-file': { type: 'string' },
    'bases-dir': { type: 'string' }, 'interruption-url': { type: 'string' }, warm: { type: 'string' },
  });
  if (values.help) { process.stdout.write(HELP); return 0; }
  if (str(values, 'buildbot') !== undefined) return buildbotWorkerCommand(values);
  // Without --master: every project joined with `crowdbake join` (DATA/projects).
  const masters = values.master as unknown as string[] | undefined;
  const master = masters?.length ? masters.join(',') : undefined;
  const token = secret(values, 'token', 'CROWDBAKE_WORKER_TOKEN');
  if (master === undefined && (values.token !== undefined || values['token-file'] !== undefined)) throw new UsageError('--token needs --master (without both, the agent serves the projects joined with `crowdbake join`)');
  if (master !== undefined && token === undefined) throw new UsageError('--token-file FILE (or $CROWDBAKE_WORKER_TOKEN) is required: the token from `crowdbake token create`');
  const executor = oneOf(values, 'executor', EXECUTOR_CHOICES, 'auto');
  const idleSource = oneOf(values, 'idle-source', IDLE_SOURCE_CHOICES, 'auto');
  const builds = positiveNumber(values, 'builds');
  if (builds !== undefined && !Number.isInteger(builds)) throw new UsageError(`--builds "${builds}" must be a whole number`);
  const warmText = str(values, 'warm');
  if (warmText !== undefined && !/^\d+$/.test(warmText)) throw new UsageError(`--warm "${warmText}" must be a whole number ≥ 0 (environments kept warm; 0: none)`);
  const preferences = preferenceFlags(values);
  const name = str(values, 'name');
  const pin = str(values, 'pin');
  if (pin !== undefined && !/^sha256:[0-9a-fA-F]{64}$/.test(pin)) throw new UsageError(`--pin "${pin}" must be sha256: followed by 64 hex digits`);
  const interruptionUrl = str(values, 'interruption-url');
  if (interruptionUrl !== undefined && !/^https?:\/\/[^/\s]+(\/\S*)?$/.test(interruptionUrl)) throw new UsageError(`--interruption-url "${interruptionUrl}" must be an http(s):// URL (the metadata service's base)`);
  warnSecretOnCommandLine(values, 'token', 'CROWDBAKE_WORKER_TOKEN');
  // Loaded here, not at the top: `--buildbot` must not load the native agent, nor this path BuildBot's.
  const { startWorker } = await import('../../worker/agent.js');
  const worker = await startWorker({
    ...(pin ? { pin } : {}),
    ...(master !== undefined ? { master, token: token! } : {}), executor, labels: list(values, 'labels'), idleSource, preferences,
    dataDir: str(values, 'data') ?? defaultDataDir('worker'),
    ...(str(values, 'bases-dir') ? { basesDir: str(values, 'bases-dir') } : {}),
    ...(name ? { name } : {}),
    ...(builds !== undefined ? { maxBuilds: builds } : {}),
    ...(warmText !== undefined ? { warmSandboxes: Number(warmText) } : {}),
    ...(interruptionUrl !== undefined ? { interruptionUrl } : {}),
  });
  console.log(`crowdbake worker: control API at ${worker.controlUrl} (crowdbake status --data …)`);
  // SIGTERM drains (finish the builds, then exit); a second signal, or SIGINT, gives them back now; a third exits at once.
  const off = onSignals((signal, count) => {
    if (count >= 3) void worker.close();
    else worker.drain(signal === 'SIGINT' || count > 1, `${signal} received`);
  });
  await worker.done;
  off();
  await worker.close();
  return worker.drained ? 0 : 1;
}

/** Flags given here override the volunteer's saved preferences (and are saved). */
function preferenceFlags(values: Record<string, string | boolean | undefined>): Partial<Preferences> {
  const preferences: Partial<Preferences> = {};
  if (str(values, 'when') !== undefined) preferences.when = oneOf(values, 'when', ['idle', 'always'] as const, 'idle');
  const idleAfter = duration(values, 'idle-after');
  if (idleAfter !== undefined) preferences.idleAfterMs = idleAfter;
  const cpus = positiveNumber(values, 'cpus');
  if (cpus !== undefined) preferences.cpus = cpus;
  const memoryBytes = size(values, 'memory');
  if (memoryBytes !== undefined) preferences.memoryBytes = memoryBytes;
  const diskBytes = size(values, 'disk');
  if (diskBytes !== undefined) preferences.diskBytes = diskBytes;
  return preferences;
}

const NOT_WITH_BUILDBOT = ['master', 'token', 'token-file', 'pin', 'disk', 'labels', 'builds'];

/** `--buildbot URL`: a worker of an existing BuildBot master (worker/buildbot/). */
async function buildbotWorkerCommand(values: Record<string, string | boolean | undefined>): Promise<number> {
  const url = required(values, 'buildbot');
  if (!/^wss?:\/\/[^/\s]+(:\d+)?\/?$/.test(url)) throw new UsageError(`--buildbot "${url}" must be ws://HOST:PORT (the master's msgpack_experimental_v7 port)`);
  const name = required(values, 'name');
  const password = secret(values, 'password', 'CROWDBAKE_BUILDBOT_PASSWORD');
  if (password === undefined) throw new UsageError('--password-file FILE (or $CROWDBAKE_BUILDBOT_PASSWORD) is required: the worker\'s password on the BuildBot master');
  if (name.includes(':')) throw new UsageError(`--name "${name}" must not contain ":"`);
  for (const flag of NOT_WITH_BUILDBOT) {
    if (values[flag] !== undefined) throw new UsageError(`--${flag} cannot be used with --buildbot`);
  }
  const executor = oneOf(values, 'executor', ['container', 'host'] as const, 'container');
  const idleSource = oneOf(values, 'idle-source', IDLE_SOURCE_CHOICES, 'auto');
  const preferences = preferenceFlags(values);
  const dataDir = str(values, 'data') ?? defaultDataDir('worker');
  const basedir = str(values, 'basedir') ?? join(dataDir, 'buildbot', name);
  warnSecretOnCommandLine(values, 'password', 'CROWDBAKE_BUILDBOT_PASSWORD');
  // Loaded here, not at the top: `--buildbot` must not load the native agent, nor this path BuildBot's.
  const { startBuildbotVolunteer } = await import('../../worker/buildbot/volunteer.js');
  const volunteer = await startBuildbotVolunteer({ url, name, password, basedir, executor, dataDir, idleSource, preferences });
  const { worker } = volunteer;
  console.log(`crowdbake worker: serving BuildBot master ${url} as ${name} (${executor} executor, basedir ${worker.basedir}); control API at ${volunteer.controlUrl} (crowdbake status --data …)`);
  const stoppedBy = await Promise.race([untilSignal().then(() => 'signal' as const), worker.done]);
  await volunteer.close();
  return stoppedBy === 'closed' ? 1 : 0;
}
