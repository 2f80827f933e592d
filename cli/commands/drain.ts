import { parse, str } from '../args.js';
import { ControlClient } from '../control-client.js';
import { defaultDataDir } from '../paths.js';

const HELP = `usage: crowdbake drain [--now] [--data DIR]

The local worker leaves, as on SIGTERM: it takes no new builds (its master shows it
"draining"), finishes the running ones and exits. --now gives them back at once instead (the
master requeues them, not counted as failed attempts). The master's admin can do the same with
POST /api/v1/workers/NAME/drain.
  --now        give the running builds back now
  --data DIR   the worker's data directory (default: ${defaultDataDir('worker')})
`;

/** `crowdbake drain`: through the local agent's control API. */
export async function drainCommand(argv: string[]): Promise<number> {
  const { values } = parse(argv, { data: { type: 'string' }, now: { type: 'boolean' } });
  if (values.help) { process.stdout.write(HELP); return 0; }
  const opened = ControlClient.open(str(values, 'data') ?? defaultDataDir('worker'));
  if ('offline' in opened) {
    console.error(`crowdbake drain: ${opened.offline}`);
    return 1;
  }
  const now = values.now === true;
  await opened.client.call('POST', '/drain', { now });
  console.log(now ? 'draining: the running builds go back to the master now; the worker exits' : 'draining: the worker finishes its builds, takes no new ones, then exits');
  return 0;
}
