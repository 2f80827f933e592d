import { existsSync } from 'node:fs';
import { resolve } from 'node:path';
import { DisplayNameSchema, parseJoinLink, type JoinLink } from '../../protocol/join.js';
import { NameSchema } from '../../protocol/build-spec.js';
import { defaultDisplayName, defaultWorkerName, join, joinedAlready } from '../../worker/join-project.js';
import { projectsDir } from '../../worker/projects.js';
import { parse, str, UsageError } from '../args.js';
import { defaultDataDir } from '../paths.js';

const HELP = `usage: crowdbake join LINK [--data DIR] [--name NAME] [--display-name TEXT] [--unlisted] [--volunteer-key FILE]

  Joins a project with the link its maintainer gave you (\`crowdbake invite create\` prints it;
  a farm with open enrollment shows its public link). This computer makes its own credential —
  a token and a key pair for this worker — and registers it with the master; the link's invite
  code is spent, not kept. Afterwards \`crowdbake worker --data DIR\` serves every project joined.

  --data DIR           the worker's data directory (default: ${defaultDataDir('worker')})
  --name NAME          this worker's name at the project (default: the host name and a short suffix)
  --display-name TEXT  the name the project shows for you (default: your user name)
  --unlisted           ask not to be listed on the project's public Contributors page
  --volunteer-key FILE use the volunteer key of another of your computers (its DATA/volunteer.key),
                       so that the project knows both are you; made once per DATA otherwise
`;

/** `crowdbake join LINK`. */
export async function joinCommand(argv: string[]): Promise<number> {
  const { values, positionals } = parse(argv, {
    data: { type: 'string' }, name: { type: 'string' }, 'display-name': { type: 'string' }, unlisted: { type: 'boolean' },
    'volunteer-key': { type: 'string' },
  }, 1);
  if (values.help) { process.stdout.write(HELP); return 0; }
  const text = positionals[0];
  if (!text) throw new UsageError('the join link is required (crowdbake join LINK)');
  let link: JoinLink;
  try { link = parseJoinLink(text); } catch (e) { throw new UsageError((e as Error).message); }
  const dataDir = resolve(str(values, 'data') ?? defaultDataDir('worker'));
  const worker = str(values, 'name') ?? defaultWorkerName();
  if (!NameSchema.safeParse(worker).success) throw new UsageError(`--name "${worker}" is not a usable worker name (letters, digits, . _ -)`);
  const displayName = str(values, 'display-name') ?? defaultDisplayName();
  const dn = DisplayNameSchema.safeParse(displayName);
  if (!dn.success) throw new UsageError(`--display-name "${displayName}" ${dn.error.issues[0]?.message ?? 'is not usable'}`);
  const keyFile = str(values, 'volunteer-key');
  if (keyFile !== undefined && !existsSync(keyFile)) throw new UsageError(`--volunteer-key ${keyFile} does not exist`);

  const already = joinedAlready(dataDir, link);
  if (already) throw new Error(already);

  const result = await join(link, { dataDir, worker, displayName: dn.data, listed: !values.unlisted, ...(keyFile !== undefined ? { volunteerKeyFile: keyFile } : {}) });
  console.error(`joined ${result.farm || link.master} as worker ${result.worker} (volunteer ${result.volunteerName}, trust ${result.trust}${result.labels.length ? `, labels ${result.labels.join(',')}` : ''})`);
  console.error(`saved in ${projectsDir(dataDir)}/${result.project}.json; start serving with: crowdbake worker --data ${dataDir}`);
  console.log(result.project);
  return 0;
}
