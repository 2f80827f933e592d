import { chmodSync, existsSync, mkdirSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import { createPrivateKey, createPublicKey, generateKeyPairSync, type KeyObject } from 'node:crypto';
import { join } from 'node:path';
import type { FarmKey } from '../../protocol/provenance.js';
import { keyIdOf } from './dsse.js';

export interface FarmSigner {
  privateKey: KeyObject;
  view: FarmKey;
}

/**
 * The master's own Ed25519 key, which signs its farm summaries: DATA/farm.key (PKCS#8 PEM,
 * 0600), made on the first start and never sent anywhere. Its public half is served at
 * `GET /.well-known/crowdbake/farm-key`; users pin its keyid. Rotation: `crowdbake farm-key
 * rotate` (cli/commands/farm-key.ts) keeps the old one as DATA/farm-keys/<keyid>.key.
 */
export function loadFarmKey(dataDir: string, farm: string): FarmSigner {
  const file = join(dataDir, 'farm.key');
  if (!existsSync(file)) {
    mkdirSync(dataDir, { recursive: true });
    const pem = generateKeyPairSync('ed25519').privateKey.export({ type: 'pkcs8', format: 'pem' }).toString();
    writeFileSync(file, pem, { mode: 0o600, flag: 'wx' });
    chmodSync(file, 0o600);
  }
  let privateKey: KeyObject;
  try { privateKey = createPrivateKey(readFileSync(file, 'utf8')); } catch (e) {
    throw new Error(`${file} is not a private key (PEM): ${(e as Error).message}; restore it from a backup (a new one would not match the key users pinned)`);
  }
  if (privateKey.asymmetricKeyType !== 'ed25519') throw new Error(`${file} is a ${privateKey.asymmetricKeyType} key; the farm key is Ed25519`);
  const pub = createPublicKey(privateKey);
  return {
    privateKey,
    view: {
      farm, keyid: keyIdOf(pub), algorithm: 'ed25519',
      publicKey: pub.export({ type: 'spki', format: 'der' }).toString('base64'),
      publicKeyPem: pub.export({ type: 'spki', format: 'pem' }).toString(),
      createdAt: statSync(file).mtime.toISOString(),
    },
  };
}
