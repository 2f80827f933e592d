import { generateKeyPairSync, sign } from 'node:crypto';
import { keyRotationText } from '../../protocol/provenance.js';
import { getProject, projectKey, saveProject } from '../../worker/projects.js';
import { post } from '../../worker/join-project.js';

/**
 * `crowdbake projects rotate-key NAME`: this worker makes a new Ed25519 key, signs the
 * rotation with its current one, and the master enrolls it (POST /api/v1/workers/W/key,
 * with the worker's token). Only on success is the new key written to DATA/projects/NAME.key;
 * a running agent picks it up for the next build.
 */
export async function rotateKey(dataDir: string, name: string): Promise<{ worker: string; retiredAt: string | null }> {
  const p = getProject(dataDir, name);
  const current = projectKey(dataDir, name);
  if (!current) throw new Error(`project "${name}" has no worker key (DATA/projects/${name}.key): join it again to make one`);
  const pair = generateKeyPairSync('ed25519');
  const workerKey = pair.publicKey.export({ type: 'spki', format: 'der' }).toString('base64');
  const signature = sign(null, Buffer.from(keyRotationText(p.worker, workerKey)), current).toString('base64');
  const res = await post(`${p.master}/api/v1/workers/${encodeURIComponent(p.worker)}/key`, JSON.stringify({ workerKey, signature }), p.pin ?? undefined, { authorization: `Bearer ${p.token}` });
  let body: { error?: string; retired?: { retiredAt?: string } | null } = {};
  try { body = JSON.parse(res.body) as typeof body; } catch { /* not JSON */ }
  if (res.status !== 200) throw new Error(`the master at ${p.master} refused the new key: ${body.error ?? `HTTP ${res.status}`}`);
  const { name: _n, ...file } = p;
  saveProject(dataDir, name, file, pair.privateKey.export({ type: 'pkcs8', format: 'pem' }).toString());
  return { worker: p.worker, retiredAt: body.retired?.retiredAt ?? null };
}
