import { existsSync, readFileSync } from 'node:fs';
import { verifyArtifact } from '../../master/provenance/verify-bundle.js';
import { parse, required, str, UsageError } from '../args.js';

const HELP = `usage: crowdbake verify FILE --provenance BUNDLE (--farm-key KEY | --trust-embedded-key) [--allow-unreplicated]

  Checks, offline, that FILE is what a Crowdbake farm verified: its sha256 against the bundle
  (GET /api/v1/builds/ID/artifacts/NAME/provenance), the farm's signature on the summary, each
  agreeing worker's signature on its statement (with the key the farm enrolled for it, and
  not after that key was revoked), that each statement is the one the farm accepted for that
  build and attempt, and that the agreeing replicas came from distinct volunteers. Prints
  each check; exits 1 with the reason on the first that fails.

  --provenance BUNDLE   the bundle file downloaded next to the artifact
  --farm-key KEY        the farm key to pin: sha256:HEX (its keyid), or a file holding its PEM
                        or the JSON of GET /.well-known/crowdbake/farm-key, fetched once over
                        a channel you trust. Without a pin verification fails
  --trust-embedded-key  no pin: check the bundle against the key it carries itself. That shows
                        only that the bundle is consistent (anyone can make one with a key of
                        their own); a warning says so
  --allow-unreplicated  accept an artifact built once (one signed attempt, nothing compared)
`;

/** `crowdbake verify FILE --provenance BUNDLE [--farm-key KEY]`. */
export async function verifyCommand(argv: string[]): Promise<number> {
  const { values, positionals } = parse(argv, {
    provenance: { type: 'string' }, 'farm-key': { type: 'string' }, 'trust-embedded-key': { type: 'boolean' }, 'allow-unreplicated': { type: 'boolean' },
  }, 1);
  if (values.help) { process.stdout.write(HELP); return 0; }
  const file = positionals[0];
  if (!file) throw new UsageError('the file to verify is required (crowdbake verify FILE --provenance BUNDLE)');
  const bundleFile = required(values, 'provenance');
  for (const f of [file, bundleFile]) if (!existsSync(f)) throw new UsageError(`${f} does not exist`);
  const pin = str(values, 'farm-key');
  const farmKey = pin === undefined ? undefined : /^sha256:/i.test(pin) ? pin : existsSync(pin) ? readFileSync(pin, 'utf8') : null;
  if (farmKey === null) throw new UsageError(`--farm-key "${pin}" is neither sha256:HEX nor a file`);
  const embedded = values['trust-embedded-key'] === true;
  if (embedded && farmKey !== undefined) throw new UsageError('--farm-key and --trust-embedded-key exclude each other: a pinned key is checked, an embedded one is not');
  if (embedded) console.error('crowdbake verify: WARNING: --trust-embedded-key: the farm key is the one the bundle carries, NOT pinned; anyone can make a bundle that passes this way');
  const r = verifyArtifact(readFileSync(file), readFileSync(bundleFile, 'utf8'), {
    ...(farmKey !== undefined ? { farmKey } : {}), trustEmbeddedKey: embedded, allowUnreplicated: values['allow-unreplicated'] === true,
  });
  for (const line of r.checked) console.log(`ok    ${line}`);
  if (!r.ok) {
    console.log(`FAIL  ${r.reason}`);
    console.error(`crowdbake verify: ${file} is NOT verified: ${r.reason}`);
    return 1;
  }
  console.log(`verified: ${file}${embedded ? ' (farm key NOT pinned)' : ''}`);
  return 0;
}
