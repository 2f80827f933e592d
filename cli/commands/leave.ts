import { resolve } from 'node:path';
import { removeProject } from '../../worker/projects.js';
import { parse, str, UsageError } from '../args.js';
import { defaultDataDir } from '../paths.js';

const HELP = `usage: crowdbake leave NAME [--data DIR]

  Stops serving a joined project (see \`crowdbake projects\`): removes its files from
  DATA/projects (the token and this worker's key). A running agent disconnects from that
  master within a second and stops its builds there; the other projects go on.

  --data DIR   the worker's data directory (default: ${defaultDataDir('worker')})
`;

/** `crowdbake leave NAME`. */
export async function leaveCommand(argv: string[]): Promise<number> {
  const { values, positionals } = parse(argv, { data: { type: 'string' } }, 1);
  if (values.help) { process.stdout.write(HELP); return 0; }
  const name = positionals[0];
  if (!name) throw new UsageError('the project name is required (crowdbake leave NAME; see crowdbake projects)');
  const p = removeProject(resolve(str(values, 'data') ?? defaultDataDir('worker')), name);
  console.log(`left ${p.name} (${p.master}, worker ${p.worker})`);
  return 0;
}
