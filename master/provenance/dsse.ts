import { createHash, createPublicKey, sign, verify, type KeyObject } from 'node:crypto';
import { dsse, json } from '@sigstore/core';
import type { Envelope } from '../../protocol/provenance.js';

/**
 * DSSE envelopes (https://github.com/secure-systems-lab/dsse, protocol v1) signed and checked
 * with Ed25519 from node:crypto over the pre-authentication encoding of @sigstore/core
 * (`DSSEv1 SP len(type) SP type SP len(payload) SP payload`). The master signs its farm
 * summaries here and checks workers' statements; `crowdbake verify` checks both offline.
 */

export const sha256Hex = (data: string | Buffer) => createHash('sha256').update(data).digest('hex');

/** `sha256:` + hex of the SPKI DER of a public key: the keyid of envelopes and the farm key's pin. */
export function keyIdOf(key: KeyObject): string {
  const pub = key.type === 'private' ? createPublicKey(key) : key;
  return `sha256:${sha256Hex(pub.export({ type: 'spki', format: 'der' }))}`;
}

/** sha256 of the RFC 8785 canonical JSON of a value (what a worker hashes its spec as). */
export function canonicalSha256(value: unknown): string {
  return sha256Hex(json.canonicalize(JSON.parse(JSON.stringify(value))));
}

export function signEnvelope(payloadType: string, payload: Buffer, key: KeyObject): Envelope {
  const sig = sign(null, dsse.preAuthEncoding(payloadType, payload), key);
  return { payloadType, payload: payload.toString('base64'), signatures: [{ keyid: keyIdOf(key), sig: sig.toString('base64') }] };
}

/** The payload's bytes when one of the envelope's signatures verifies with `key`, else null. */
export function verifyEnvelope(env: Envelope, key: KeyObject): Buffer | null {
  const payload = Buffer.from(env.payload, 'base64');
  // Standard base64 only: a payload that does not re-encode to the same text was not what was signed.
  if (payload.toString('base64') !== env.payload) return null;
  const pae = dsse.preAuthEncoding(env.payloadType, payload);
  for (const s of env.signatures) {
    try {
      if (verify(null, pae, key, Buffer.from(s.sig, 'base64'))) return payload;
    } catch { /* a malformed signature does not verify */ }
  }
  return null;
}

/** An Ed25519 public key from SPKI DER in base64, or null. */
export function publicKeyOf(spkiBase64: string): KeyObject | null {
  try {
    const k = createPublicKey({ key: Buffer.from(spkiBase64, 'base64'), format: 'der', type: 'spki' });
    return k.asymmetricKeyType === 'ed25519' ? k : null;
  } catch {
    return null;
  }
}
