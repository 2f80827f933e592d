import type { IncomingMessage, ServerResponse } from 'node:http';
import { FARM_KEY_URL } from '../../protocol/provenance.js';
import { HttpError, sendJson } from '../http-api.js';
import type { Verification } from '../verification.js';
import { provenanceBundle, type BundleDeps } from './bundle.js';


/**
 * The [provenance] routes:
 *   GET /.well-known/crowdbake/farm-key                      the farm key (JSON; `?format=pem`: the PEM), always public
 *   GET /api/v1/builds/ID/artifacts/NAME/provenance          the artifact's bundle (protocol/provenance.ts)
 *   GET /api/v1/builds/ID/diffoscope                         the diagnosis of a disagreeing group (diffoscope.ts)
 * Reads follow the farm's `public:` setting like every other read (`requireRead`).
 */
export class ProvenanceRoutes {
  constructor(private readonly deps: BundleDeps & {
    verification?: Verification | undefined;
    diagnosis?: { report(buildId: number): Promise<unknown> };
  }) {}

  async handle(req: IncomingMessage, res: ServerResponse, url: URL, requireRead: () => void): Promise<boolean> {
    const path = url.pathname;
    if ((req.method ?? 'GET') !== 'GET') return false;
    const d = this.deps;
    if (path === FARM_KEY_URL) {
      const key = d.signer().view;
      if (url.searchParams.get('format') === 'pem') {
        res.writeHead(200, { 'content-type': 'application/x-pem-file', 'cache-control': 'no-cache' });
        res.end(key.publicKeyPem);
      } else sendJson(res, 200, key);
      return true;
    }
    let m: RegExpExecArray | null;
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
}
