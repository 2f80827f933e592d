import { existsSync, readFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { openStore } from '../../master/store/open-store.js';
import { createWorkerToken, DEFAULT_TOKEN_MAX_BUILDS, MAX_TOKEN_MAX_BUILDS } from '../../master/tokens.js';
import { keyIdOf, publicKeyOf } from '../../master/provenance/dsse.js';
import { WorkerKeys } from '../../master/provenance/worker-keys.js';
import { list, parse, required, str, UsageError } from '../args.js';
import { defaultDataDir } from '../paths.js';

const HELP = `usage: crowdbake token create --data DIR --name NAME [--labels a,b] [--max-builds N]
       crowdbake token list   --data DIR
       crowdbake token revoke NAME --data DIR
       crowdbake token revoke-key NAME --data DIR

  --data DIR    the master's data directory (default: ${defaultDataDir('master')})
  --store URL   the master's store, if not DATA/crowdbake.db
  --name NAME   the worker's name; the token is printed as the last line of stdout
  --labels a,b  labels every worker using this token gets (trusted, set by the maintainer);
                builders' requires.labels are matched against these only, never against
                labels a worker claims for itself
  revoke-key    retire the worker's signing key ([provenance]): statements it signs from now
                on are refused; those the farm accepted before stay verifiable (their bundles
                name the time of revocation). The worker enrolls a new key by joining again
  --max-builds N  builds at once the master runs on this worker, at most (default
                ${DEFAULT_TOKEN_MAX_BUILDS}, up to ${MAX_TOKEN_MAX_BUILDS}); a worker offering more gets this many
`;

export async function tokenCommand(argv: string[]): Promise<number> {
  const [sub, ...rest] = argv;
  if (!sub || sub === '--help' || sub === '-h') { process.stdout.write(HELP); return sub ? 0 : 2; }
  const { values, positionals } = parse(rest, {
    data: { type: 'string' }, store: { type: 'string' }, name: { type: 'string' }, labels: { type: 'string' },
    'max-builds': { type: 'string' },
  }, sub === 'revoke' || sub === 'revoke-key' ? 1 : 0);
  if (values.help) { process.stdout.write(HELP); return 0; }
  const dataDir = resolve(str(values, 'data') ?? defaultDataDir('master'));
  const store = await openStore(str(values, 'store') ?? `sqlite:${join(dataDir, 'crowdbake.db')}`);
  try {
    switch (sub) {
      case 'create': {
        const token = await createWorkerToken(store, required(values, 'name'), list(values, 'labels'), maxBuilds(str(values, 'max-builds')));
        const fp = join(dataDir, 'tls.fingerprint');
        if (existsSync(fp)) console.error(`the master's certificate: the volunteer passes --pin ${readFileSync(fp, 'utf8').trim()}`);
        console.error(`created a token for worker "${str(values, 'name')}"; give it to the volunteer (it is shown only once):`);
        console.log(token);
        return 0;
      }
      case 'list': {
        for (const t of await store.listTokens()) {
          const key = t.workerKey ? publicKeyOf(t.workerKey) : null;
          console.log(`${t.name}\t${t.revokedAt ? `revoked ${t.revokedAt}` : 'active'}\tlabels=${t.labels.join(',') || '-'}\tmax-builds=${t.maxBuilds}\tcreated ${t.createdAt}\tkey=${key ? keyIdOf(key) : 'none'}`);
        }
        return 0;
      }
      case 'revoke': {
        const name = positionals[0] ?? str(values, 'name');
        if (!name) throw new UsageError('token revoke needs the NAME of the token');
        if (!(await store.revokeToken(name, new Date().toISOString()))) {
          console.error(`crowdbake token: no active token named "${name}"`);
          return 1;
        }
        console.log(`revoked ${name}; a running master disconnects a worker using it within a second and refuses it from now on`);
        return 0;
      }
      case 'revoke-key': {
        const name = positionals[0] ?? str(values, 'name');
        if (!name) throw new UsageError('token revoke-key needs the NAME of the worker');
        const retired = await new WorkerKeys(store, dataDir).replace(name, null, 'revoked');
        if (!retired) {
          console.error(`crowdbake token: worker "${name}" has no enrolled key (nothing to revoke)`);
          return 1;
        }
        console.log(`revoked the key of ${name} at ${retired.retiredAt}; statements it signs from now on are refused, earlier ones stay verifiable`);
        return 0;
      }
      default:
        throw new UsageError(`unknown subcommand "${sub}" (create, list, revoke, revoke-key)`);
    }
  } finally {
    await store.close();
  }
}

function maxBuilds(v: string | undefined): number {
  if (v === undefined) return DEFAULT_TOKEN_MAX_BUILDS;
  const n = Number(v);
  if (!/^\d+$/.test(v) || n < 1 || n > MAX_TOKEN_MAX_BUILDS) {
    throw new UsageError(`--max-builds "${v}" must be a whole number from 1 to ${MAX_TOKEN_MAX_BUILDS}`);
  }
  return n;
}
