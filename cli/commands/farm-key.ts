import { resolve } from 'node:path';
import { readFarmInfo } from '../../master/enrollment/invites.js';
import { loadFarmKey, rotateFarmKey } from '../../master/provenance/farm-key.js';
import { parse, str, UsageError } from '../args.js';
import { defaultDataDir } from '../paths.js';

const HELP = `usage: crowdbake farm-key show [--data DIR] [--pem]
       crowdbake farm-key rotate [--data DIR]

  The key that signs this farm's provenance summaries (DATA/farm.key, made at the master's
  first start). \`show\` prints its keyid, the value users pin (\`crowdbake verify --farm-key\`);
  the same is served at GET /.well-known/crowdbake/farm-key. \`rotate\` keeps the old key in
  DATA/farm-keys/ and makes a new one, used from the master's next start: tell your users the
  new keyid through a channel they trust; bundles they downloaded before still verify with the
  old one.

  --data DIR   the master's data directory (default: ${defaultDataDir('master')})
  --pem        print the public key as PEM too
`;

/** `crowdbake farm-key show|rotate`. */
export async function farmKeyCommand(argv: string[]): Promise<number> {
  const [sub, ...rest] = argv;
  if (!sub || sub === '--help' || sub === '-h') { process.stdout.write(HELP); return sub ? 0 : 2; }
  const { values } = parse(rest, { data: { type: 'string' }, pem: { type: 'boolean' } });
  if (values.help) { process.stdout.write(HELP); return 0; }
  const dataDir = resolve(str(values, 'data') ?? defaultDataDir('master'));
  const farm = readFarmInfo(dataDir)?.name ?? 'crowdbake';
  switch (sub) {
    case 'show': {
      const k = loadFarmKey(dataDir, farm).view;
      console.log(k.keyid);
      if (values.pem) process.stdout.write(k.publicKeyPem);
      return 0;
    }
    case 'rotate': {
      const r = rotateFarmKey(dataDir, farm);
      console.error(`the old key ${r.old} is kept in ${r.keptAt}; restart the master to sign with the new one`);
      console.log(r.now);
      return 0;
    }
    default:
      throw new UsageError(`unknown subcommand "${sub}" (show, rotate)`);
  }
}
