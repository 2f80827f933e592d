import { join, resolve } from 'node:path';
import { createInvite, inviteState, joinLinkFor, readFarmInfo, type FarmInfo } from '../../master/enrollment/invites.js';
import { openStore } from '../../master/store/open-store.js';
import { DEFAULT_TOKEN_MAX_BUILDS, MAX_TOKEN_MAX_BUILDS } from '../../master/tokens.js';
import { duration, list, parse, str, UsageError } from '../args.js';
import { defaultDataDir } from '../paths.js';

const HELP = `usage: crowdbake invite create --data DIR [--labels a,b] [--uses N] [--expires DUR] [--note TEXT]
       crowdbake invite list   --data DIR
       crowdbake invite revoke ID --data DIR

  Makes join links for volunteers: \`crowdbake join LINK\` on their computer makes the
  worker's own credential and registers it; the invite's code is spent, never a credential.

  --data DIR      the master's data directory (default: ${defaultDataDir('master')})
  --store URL     the master's store, if not DATA/crowdbake.db
  --labels a,b    labels every worker that joins with it gets (trusted, set by the maintainer)
  --max-builds N  builds at once granted to each such worker (default ${DEFAULT_TOKEN_MAX_BUILDS}, up to ${MAX_TOKEN_MAX_BUILDS})
  --uses N        how many workers may join with it (default 1)
  --expires DUR   how long it is good for (30m, 24h, 7d); default: until used up or revoked
  --note TEXT     a note for yourself (shown by invite list)
  --url URL       the master's public URL for the link (default: crowdbake.yml url:, else the
                  address the master last listened on, from DATA/farm.json)

  The join link is printed as the last line of stdout; it holds the master's TLS pin when
  the master serves TLS. It is shown only once.
`;

export async function inviteCommand(argv: string[]): Promise<number> {
  const [sub, ...rest] = argv;
  if (!sub || sub === '--help' || sub === '-h') { process.stdout.write(HELP); return sub ? 0 : 2; }
  const { values, positionals } = parse(rest, {
    data: { type: 'string' }, store: { type: 'string' }, labels: { type: 'string' }, 'max-builds': { type: 'string' },
    uses: { type: 'string' }, expires: { type: 'string' }, note: { type: 'string' }, url: { type: 'string' },
  }, sub === 'revoke' ? 1 : 0);
  if (values.help) { process.stdout.write(HELP); return 0; }
  const dataDir = resolve(str(values, 'data') ?? defaultDataDir('master'));
  let farm: FarmInfo | null = null;
  if (sub === 'create') {
    farm = readFarmInfo(dataDir);
    const url = str(values, 'url');
    if (url !== undefined) {
      if (!/^https?:\/\/[^/\s]+/.test(url)) throw new UsageError(`--url "${url}" must be the master's http:// or https:// URL`);
      farm = { url: new URL(url).origin, name: farm?.name ?? 'crowdbake', pin: farm?.pin ?? null };
    }
    if (!farm) throw new UsageError(`${join(dataDir, 'farm.json')} does not exist (the master has not run with this data dir yet): start it once, or pass --url`);
  }
  const store = await openStore(str(values, 'store') ?? `sqlite:${join(dataDir, 'crowdbake.db')}`);
  try {
    switch (sub) {
      case 'create': {
        const expiresInMs = duration(values, 'expires');
        const { row, code } = await createInvite(store, {
          labels: list(values, 'labels'), maxBuilds: whole(values, 'max-builds', DEFAULT_TOKEN_MAX_BUILDS, MAX_TOKEN_MAX_BUILDS),
          uses: whole(values, 'uses', 1, 1_000_000), note: str(values, 'note') ?? '', ...(expiresInMs !== undefined ? { expiresInMs } : {}),
        });
        if (farm!.pin && farm!.url.startsWith('https:')) console.error(`the link pins the master's certificate ${farm!.pin}`);
        console.error(`created invite ${row.id} (${row.maxUses} use${row.maxUses === 1 ? '' : 's'}${row.expiresAt ? `, expires ${row.expiresAt}` : ''}); give the volunteer this link (it is shown only once):`);
        console.log(joinLinkFor(farm!, code));
        return 0;
      }
      case 'list': {
        for (const i of await store.listInvites()) {
          console.log([i.id, inviteState(i), `uses=${i.usesLeft}/${i.maxUses}`, `labels=${i.labels.join(',') || '-'}`, `max-builds=${i.maxBuilds}`,
            `expires=${i.expiresAt ?? 'never'}`, `created ${i.createdAt}`, ...(i.note ? [`note=${i.note}`] : [])].join('\t'));
        }
        return 0;
      }
      case 'revoke': {
        const id = positionals[0];
        if (!id) throw new UsageError('invite revoke needs the ID of the invite (see crowdbake invite list)');
        if (!(await store.revokeInvite(id, new Date().toISOString()))) {
          console.error(`crowdbake invite: no active invite "${id}"`);
          return 1;
        }
        console.log(`revoked ${id}; joining with its link is refused from now on (workers that joined with it keep their tokens: revoke those with crowdbake token revoke)`);
        return 0;
      }
      default:
        throw new UsageError(`unknown subcommand "${sub}" (create, list, revoke)`);
    }
  } finally {
    await store.close();
  }
}

function whole(values: Record<string, unknown>, name: string, dflt: number, max: number): number {
  const v = str(values, name);
  if (v === undefined) return dflt;
  const n = Number(v);
  if (!/^\d+$/.test(v) || n < 1 || n > max) throw new UsageError(`--${name} "${v}" must be a whole number from 1 to ${max}`);
  return n;
}
