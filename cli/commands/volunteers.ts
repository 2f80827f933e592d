import { join, resolve } from 'node:path';
import { Credit } from '../../master/credit.js';
import { volunteerViews } from '../../master/enrollment/routes.js';
import { openStore } from '../../master/store/open-store.js';
import type { Trust } from '../../master/store/store.js';
import { Volunteers } from '../../master/volunteers.js';
import { parse, str, UsageError } from '../args.js';
import { defaultDataDir } from '../paths.js';

const HELP = `usage: crowdbake volunteers list    --data DIR [--json]
       crowdbake volunteers promote NAME --data DIR [--reason TEXT]
       crowdbake volunteers demote  NAME --data DIR [--reason TEXT]
       crowdbake volunteers ban     NAME --data DIR [--reason TEXT]

  NAME is a volunteer's display name or id (see list). Trust: new (on joining), trusted
  (promote; also earned by agreeing replicated results, crowdbake.yml trust.promoteAfter),
  banned (a running master disconnects all their workers within a second and refuses them).
  demote sets trust back to new (it also lifts a ban). Every change is recorded with its reason.

  --data DIR     the master's data directory (default: ${defaultDataDir('master')})
  --store URL    the master's store, if not DATA/crowdbake.db
  --reason TEXT  why (recorded with the change)
`;

const ACTIONS: Record<string, Trust> = { promote: 'trusted', demote: 'new', ban: 'banned' };

export async function volunteersCommand(argv: string[]): Promise<number> {
  const [sub, ...rest] = argv;
  if (!sub || sub === '--help' || sub === '-h') { process.stdout.write(HELP); return sub ? 0 : 2; }
  const { values, positionals } = parse(rest, {
    data: { type: 'string' }, store: { type: 'string' }, reason: { type: 'string' }, json: { type: 'boolean' },
  }, sub === 'list' ? 0 : 1);
  if (values.help) { process.stdout.write(HELP); return 0; }
  if (sub !== 'list' && !Object.hasOwn(ACTIONS, sub)) throw new UsageError(`unknown subcommand "${sub}" (list, promote, demote, ban)`);
  const dataDir = resolve(str(values, 'data') ?? defaultDataDir('master'));
  const store = await openStore(str(values, 'store') ?? `sqlite:${join(dataDir, 'crowdbake.db')}`);
  try {
    if (sub === 'list') {
      const views = await volunteerViews(store, new Credit(store), true);
      if (values.json) { console.log(JSON.stringify(views, null, 2)); return 0; }
      for (const v of views) {
        const c = v.credit;
        console.log([v.id, v.displayName, v.trust, `(${v.trustSource})`, v.listed ? 'listed' : 'unlisted', `streak=${v.streak}`,
          `workers=${v.workers?.map((w) => w.name).join(',') || '-'}`, `builds=${c.builds}`, `cpu=${Math.round(c.cpuMs / 1000)}s`, `wall=${Math.round(c.wallMs / 1000)}s`,
          `agreed=${c.agreed}`, `disagreed=${c.disagreed}`].join('\t'));
      }
      return 0;
    }
    const name = positionals[0];
    if (!name) throw new UsageError(`volunteers ${sub} needs the NAME (display name or id) of a volunteer`);
    const volunteers = new Volunteers(store);
    const v = await volunteers.resolve(name);
    const trust = ACTIONS[sub]!;
    const after = await volunteers.setTrust(v.id, trust, str(values, 'reason') ?? `${sub} by the maintainer (crowdbake volunteers ${sub})`);
    console.log(`${after.displayName} (${after.id}) is now ${after.trust}${trust === 'banned' ? '; a running master disconnects their workers within a second and refuses them from now on' : ''}`);
    return 0;
  } finally {
    await store.close();
  }
}
