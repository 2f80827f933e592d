import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { UsageError } from './args.js';
import { BUNDLE_INPUTS, inputsDigest, type BundleInputs } from './bundle-inputs.js';

export const USAGE = `crowdbake — run a project's builds on computers donated by its community

usage: crowdbake <command> [flags]     (every command has --help)

  demo      a master, a local worker and the sample project; forces one build
  master    run the coordinator (builders, queue, REST API, dashboard)
  worker    run the volunteer agent that connects to a master and builds
  token     create, list or revoke worker tokens in a master's store
  invite    create, list or revoke join links for volunteers
  join      join a project with its link (then \`crowdbake worker --data DIR\` serves it)
  projects  the projects this computer joined; \`projects share NAME N\` sets a share
  leave     stop serving a joined project
  volunteers  list volunteers; promote, demote or ban one
  build     request a build of a builder (and --wait for its result)
  verify    check a downloaded artifact against its provenance bundle, offline
  farm-key  the key that signs this farm's provenance summaries: show, rotate
  status    the local agent: state, idle source, current build, limits (--json)
  pause, resume, limits, history
            control the local agent: pause (--for 1h to snooze), resume,
            change limits, list the builds this machine ran
  drain     the local worker leaves: finishes its builds (--now: gives them back), then exits
  ui        open this machine's volunteer pages in the browser
  app       the desktop app: tray and dashboard window (needs the Electron binary)
`;

type Command = (argv: string[]) => Promise<number>;

/**
 * Each command's modules are loaded when it runs, not at start: `crowdbake worker` must not
 * carry the master, the store or the dashboard's schemas in its memory (nor `status` the agent).
 */
const COMMANDS: Record<string, () => Promise<Command>> = {
  demo: async () => (await import('./commands/demo.js')).demoCommand,
  master: async () => (await import('./commands/master.js')).masterCommand,
  worker: async () => (await workerModule()).workerCommand,
  token: async () => (await import('./commands/token.js')).tokenCommand,
  invite: async () => (await import('./commands/invite.js')).inviteCommand,
  join: async () => (await import('./commands/join.js')).joinCommand,
  projects: async () => (await import('./commands/projects.js')).projectsCommand,
  leave: async () => (await import('./commands/leave.js')).leaveCommand,
  volunteers: async () => (await import('./commands/volunteers.js')).volunteersCommand,
  build: async () => (await import('./commands/build.js')).buildCommand,
  verify: async () => (await import('./commands/verify.js')).verifyCommand,
  'farm-key': async () => (await import('./commands/farm-key.js')).farmKeyCommand,
  status: async () => (await import('./commands/agent-control.js')).agentControlCommand('status'),
  pause: async () => (await import('./commands/agent-control.js')).agentControlCommand('pause'),
  resume: async () => (await import('./commands/agent-control.js')).agentControlCommand('resume'),
  limits: async () => (await import('./commands/agent-control.js')).agentControlCommand('limits'),
  history: async () => (await import('./commands/agent-control.js')).agentControlCommand('history'),
  drain: async () => (await import('./commands/drain.js')).drainCommand,
  app: async () => (await import('./commands/app.js')).appCommand,
  ui: async () => (await import('./commands/ui.js')).uiCommand,
};

const DIST = fileURLToPath(new URL('..', import.meta.url));

/**
 * `crowdbake worker` from dist/worker-bundle/ (scripts/build-worker-bundle.mjs, part of `npm run
 * build`): the same code as a few files, about 5 MiB less memory in an agent that idles for hours.
 * The module tree instead when there is no bundle, when the tree it was built from has changed
 * since (a `tsc` run since the last full build: a stale bundle would run old code), or with
 * CROWDBAKE_WORKER_UNBUNDLED=1 (debugging; the bench's A/B).
 */
async function workerModule(): Promise<typeof import('./commands/worker.js')> {
  if (process.env.CROWDBAKE_WORKER_UNBUNDLED !== '1') {
    let inputs: BundleInputs | null = null;
    try { inputs = JSON.parse(readFileSync(join(DIST, 'worker-bundle', BUNDLE_INPUTS), 'utf8')) as BundleInputs; } catch { /* no bundle built */ }
    if (inputs && Array.isArray(inputs.files) && inputsDigest(DIST, inputs.files) === inputs.sha256) {
      return await import(pathToFileURL(join(DIST, 'worker-bundle', 'worker.js')).href) as typeof import('./commands/worker.js');
    }
    if (inputs) process.stderr.write('crowdbake: dist/worker-bundle was built from other files than dist/ holds now (run `npm run build`); running the unbundled worker\n');
  }
  return import('./commands/worker.js');
}

/** Exits once stdout and stderr are flushed (a pipe would otherwise lose the last lines). */
function exitFlushed(code: number): void {
  let pending = 2;
  const done = () => { if (--pending === 0) process.exit(code); };
  process.stdout.write('', done);
  process.stderr.write('', done);
  setTimeout(() => process.exit(code), 2000).unref();
}

/** Entry point: runs one command and exits 0 (ok), 1 (failure) or 2 (bad usage). */
export async function main(argv: string[]): Promise<void> {
  exitFlushed(await run(argv));
}

async function run(argv: string[]): Promise<number> {
  const [name, ...rest] = argv;
  if (!name || name === '--help' || name === '-h' || name === 'help') {
    process.stdout.write(USAGE);
    return name ? 0 : 2;
  }
  if (name === '--version') {
    console.log('0.1.0');
    return 0;
  }
  const load = Object.hasOwn(COMMANDS, name) ? COMMANDS[name] : undefined;
  if (!load) {
    console.error(`crowdbake: unknown command "${name}"\n\n${USAGE}`);
    return 2;
  }
  try {
    return await (await load())(rest);
  } catch (e) {
    if (e instanceof UsageError) {
      console.error(`crowdbake ${name}: ${e.message} (see crowdbake ${name} --help)`);
      return 2;
    }
    console.error(`crowdbake ${name}: ${(e as Error).message}`);
    if (process.env.CROWDBAKE_DEBUG) console.error(e);
    return 1;
  }
}
