import { chmodSync, existsSync, mkdirSync, readFileSync, renameSync, statSync, writeFileSync } from 'node:fs';
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
 * rotate` (`rotateFarmKey`) moves the old one to DATA/farm-keys/<hex>.key; the master signs
 * with the new one from its next start, and bundles downloaded before still verify with the
 * old keyid.
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

/** Moves DATA/farm.key aside (kept, 0600) and makes a new one; returns both keyids. */
export function rotateFarmKey(dataDir: string, farm: string): { old: string; now: string; keptAt: string } {
  if (!existsSync(join(dataDir, 'farm.key'))) throw new Error(`${join(dataDir, 'farm.key')} does not exist (the master makes it at its first start)`);
  const old = loadFarmKey(dataDir, farm).view.keyid;
  const dir = join(dataDir, 'farm-keys');
  mkdirSync(dir, { recursive: true, mode: 0o700 });
  const keptAt = join(dir, `${old.slice('sha256:'.length)}.key`);
  renameSync(join(dataDir, 'farm.key'), keptAt);
  chmodSync(keptAt, 0o600);
  return { old, now: loadFarmKey(dataDir, farm).view.keyid, keptAt };
}
