import { UsageError } from './args.js';
import { buildCommand } from './commands/build.js';
import { demoCommand } from './commands/demo.js';
import { masterCommand } from './commands/master.js';
import { tokenCommand } from './commands/token.js';
import { workerCommand } from './commands/worker.js';

export const USAGE = `crowdbake — run a project's builds on computers donated by its community

usage: crowdbake <command> [flags]     (every command has --help)

  demo      a master, a local worker and the sample project; forces one build
  master    run the coordinator (builders, queue, REST API, dashboard)
  worker    run the volunteer agent that connects to a master and builds
  token     create, list or revoke worker tokens in a master's store
  build     request a build of a builder (and --wait for its result)
  status, pause, resume, limits
            talk to the local agent (not available in this version)
  app       the desktop app (needs Electron installed)
`;

type Command = (argv: string[]) => Promise<number>;

const COMMANDS: Record<string, Command> = {
  demo: demoCommand,
  master: masterCommand,
  worker: workerCommand,
  token: tokenCommand,
  build: buildCommand,
};

const NOT_YET: Record<string, string> = {
  status: 'the local control API (status, pause, resume, limits) is not available in this version',
  pause: 'the local control API (status, pause, resume, limits) is not available in this version',
  resume: 'the local control API (status, pause, resume, limits) is not available in this version',
  limits: 'the local control API (status, pause, resume, limits) is not available in this version',
  app: 'the desktop app is not available in this version; use `crowdbake demo` or `crowdbake master` and open the dashboard in a browser',
};

/** Entry point; returns only by exiting: 0 ok, 1 failure, 2 bad usage. */
export async function main(argv: string[]): Promise<void> {
  const [name, ...rest] = argv;
  if (!name || name === '--help' || name === '-h' || name === 'help') {
    process.stdout.write(USAGE);
    process.exit(name ? 0 : 2);
  }
  if (name === '--version') {
    console.log('0.1.0');
    process.exit(0);
  }
  const cmd = COMMANDS[name];
  if (!cmd) {
    if (NOT_YET[name]) {
      console.error(`crowdbake ${name}: ${NOT_YET[name]}`);
      process.exit(1);
    }
    console.error(`crowdbake: unknown command "${name}"\n\n${USAGE}`);
    process.exit(2);
  }
  try {
    const code = await cmd(rest);
    process.exit(code);
  } catch (e) {
    if (e instanceof UsageError) {
      console.error(`crowdbake ${name}: ${e.message} (see crowdbake ${name} --help)`);
      process.exit(2);
    }
    console.error(`crowdbake ${name}: ${(e as Error).message}`);
    if (process.env.CROWDBAKE_DEBUG) console.error(e);
    process.exit(1);
  }
}
