import { resolve } from 'node:path';
import type { AgentStatus } from '../../protocol/control-api.js';
import { projectRows, setShare } from '../../worker/projects.js';
import { ControlClient } from '../control-client.js';
import { parse, str, UsageError } from '../args.js';
import { defaultDataDir } from '../paths.js';

const HELP = `usage: crowdbake projects [--data DIR] [--json]
       crowdbake projects share NAME N [--data DIR]

  The projects this computer joined (\`crowdbake join LINK\`): name, master, worker, share and,
  while the agent runs, whether it is connected. \`share NAME N\` sets a project's resource
  share: when several projects have work, each gets build slots in proportion to its share
  (default 1). A running agent applies it at once.

  --data DIR   the worker's data directory (default: ${defaultDataDir('worker')})
  --json       machine-readable
`;

/** `crowdbake projects`. */
export async function projectsCommand(argv: string[]): Promise<number> {
  const { values, positionals } = parse(argv, { data: { type: 'string' }, json: { type: 'boolean' } }, 3);
  if (values.help) { process.stdout.write(HELP); return 0; }
  const dataDir = resolve(str(values, 'data') ?? defaultDataDir('worker'));
  if (positionals[0] === 'share') {
    const [, name, n] = positionals;
    if (!name || n === undefined) throw new UsageError('usage: crowdbake projects share NAME N');
    const share = Number(n);
    if (!Number.isFinite(share) || share <= 0 || share > 1_000_000) throw new UsageError(`share "${n}" must be a positive number (up to 1000000)`);
    const p = setShare(dataDir, name, share);
    console.log(`${p.name}: share ${p.share}`);
    return 0;
  }
  if (positionals.length) throw new UsageError(`unknown subcommand "${positionals[0]}" (projects, or projects share NAME N)`);
  let live: AgentStatus['projects'] | undefined;
  let agent = 'not running';
  const opened = ControlClient.open(dataDir);
  if ('client' in opened) {
    try {
      const s = await opened.client.call<AgentStatus>('GET', '/status');
      live = s.projects;
      agent = 'running';
    } catch (e) { agent = `unreachable (${(e as Error).message})`; }
  }
  const rows = projectRows(dataDir, live, agent);
  if (values.json) { console.log(JSON.stringify(rows, null, 2)); return 0; }
  if (!rows.length) { console.log(`no project joined in ${dataDir} (crowdbake join LINK)`); return 0; }
  for (const r of rows) console.log(`${r.name}\t${r.master}\tworker=${r.worker}\tshare=${r.share}\t${r.state}${r.running !== undefined ? `\trunning=${r.running}` : ''}`);
  return 0;
}
