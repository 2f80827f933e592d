import { verify } from 'node:crypto';
import type { IncomingMessage, ServerResponse } from 'node:http';
import { FARM_KEY_URL, KeyRotationRequestSchema, keyRotationText } from '../../protocol/provenance.js';
import { describeIssues } from '../../protocol/parse.js';
import { HttpError, readJson, sendJson } from '../http-api.js';
import { verifyWorkerToken } from '../tokens.js';
import { publicKeyOf } from './dsse.js';
import type { Verification } from '../verification.js';
import { provenanceBundle, type BundleDeps } from './bundle.js';


/**
 * The [provenance] routes:
 *   GET /.well-known/crowdbake/farm-key                      the farm key (JSON; `?format=pem`: the PEM), always public
 *   GET /api/v1/builds/ID/artifacts/NAME/provenance          the artifact's bundle (protocol/provenance.ts)
 *   GET /api/v1/builds/ID/diffoscope                         the diagnosis of a disagreeing group (diffoscope.ts)
 *   POST /api/v1/workers/NAME/key           (the worker's token) enroll a new key, signed with the current one
 *   POST /api/v1/workers/NAME/key/revoke    (admin) retire the worker's key: its later statements are refused
 * Reads follow the farm's `public:` setting like every other read (`access.read`).
 */
export class ProvenanceRoutes {
  constructor(private readonly deps: BundleDeps & {
    verification?: Verification | undefined;
    diagnosis?: { report(buildId: number): Promise<unknown> };
  }) {}

  async handle(req: IncomingMessage, res: ServerResponse, url: URL, access: { read(): void; admin(): void }): Promise<boolean> {
    const path = url.pathname;
    const d = this.deps;
    let m: RegExpExecArray | null;
    if ((req.method ?? 'GET') === 'POST' && (m = /^\/api\/v1\/workers\/([^/]+)\/key(\/revoke)?$/.exec(path))) {
      const name = decodeURIComponent(m[1]!);
      if (m[2]) {
        access.admin();
        const retired = await d.keys.replace(name, null, 'revoked').catch((e: Error) => { throw new HttpError(404, e.message); });
        sendJson(res, 200, { worker: name, revoked: retired });
        return true;
      }
      sendJson(res, 200, await this.rotate(req, name));
      return true;
    }
    if ((req.method ?? 'GET') !== 'GET') return false;
    const requireRead = () => access.read();
    if (path === FARM_KEY_URL) {
      const key = d.signer().view;
      if (url.searchParams.get('format') === 'pem') {
        res.writeHead(200, { 'content-type': 'application/x-pem-file', 'cache-control': 'no-cache' });
        res.end(key.publicKeyPem);
      } else sendJson(res, 200, key);
      return true;
    }
    if ((m = /^\/api\/v1\/builds\/(\d+)\/artifacts\/([^/]+)\/provenance$/.exec(path))) {
      requireRead();
      const id = Number(m[1]);
      const name = decodeURIComponent(m[2]!);
      // The same rule as for the artifact itself: a replicated build's bytes are vouched for only once verified.
      const withheld = await d.verification?.withheld(id);
      if (withheld) throw new HttpError(409, withheld);
      const row = await d.store.getBuild(id);
      if (row && (row.state !== 'finished' || row.result !== 'success')) {
        throw new HttpError(409, `build ${id} ${row.state === 'finished' ? `ended ${row.result}` : `is ${row.state}`}: only a successful build's artifacts have provenance`);
      }
      const bundle = await provenanceBundle(d, id, name);
      if (!bundle) throw new HttpError(404, `build ${id} has no artifact "${name}"`);
      const text = JSON.stringify(bundle, null, 1);
      res.writeHead(200, {
        'content-type': 'application/json; charset=utf-8', 'content-length': Buffer.byteLength(text),
        'content-disposition': `attachment; filename="${name.replace(/"/g, '')}.provenance.json"`,
      });
      res.end(text);
      return true;
    }
    if ((m = /^\/api\/v1\/builds\/(\d+)\/diffoscope$/.exec(path)) && d.diagnosis) {
      requireRead();
      sendJson(res, 200, await d.diagnosis.report(Number(m[1])));
      return true;
    }
    return false;
  }

  /**
   * A worker enrolls a new key. Runs on the master on what a worker sent: the token decides
   * who it is (never the body), and the new key counts only if the worker's current key
   * signed it, so a stolen token alone cannot put another key in its place.
   */
  private async rotate(req: IncomingMessage, name: string): Promise<{ worker: string; workerKey: string; retired: unknown }> {
    const bearer = /^Bearer\s+(\S+)$/i.exec(req.headers.authorization ?? '')?.[1];
    if (!bearer) throw new HttpError(401, 'this request needs "Authorization: Bearer <worker token>"');
    const check = await verifyWorkerToken(this.deps.store, bearer);
    if (!check.ok) throw new HttpError(403, check.reason);
    if (check.token.name !== name) throw new HttpError(403, `the token is worker ${check.token.name}'s, not ${name}'s`);
    const body = KeyRotationRequestSchema.safeParse(await readJson(req));
    if (!body.success) throw new HttpError(400, `bad request body: ${describeIssues(body.error)}`);
    const current = check.token.workerKey ? publicKeyOf(check.token.workerKey) : null;
    if (!current) throw new HttpError(409, `worker ${name} has no enrolled key to rotate from (a \`token create\` worker, or its key was revoked)`);
    if (!publicKeyOf(body.data.workerKey)) throw new HttpError(400, 'workerKey: not an Ed25519 public key');
    let signed = false;
    try { signed = verify(null, Buffer.from(keyRotationText(name, body.data.workerKey)), current, Buffer.from(body.data.signature, 'base64')); } catch { signed = false; }
    if (!signed) throw new HttpError(403, 'signature: not made by the key enrolled for this worker');
    const retired = await this.deps.keys.replace(name, body.data.workerKey, 'rotated').catch((e: Error) => { throw new HttpError(409, e.message); });
    return { worker: name, workerKey: body.data.workerKey, retired };
  }
}
