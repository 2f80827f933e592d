import { createHash, generateKeyPairSync, randomBytes, sign } from 'node:crypto';
import { request as httpRequest, type IncomingMessage, type RequestOptions } from 'node:http';
import { request as httpsRequest } from 'node:https';
import { hostname, userInfo } from 'node:os';
import { connect as tlsConnect, type TLSSocket } from 'node:tls';
import { joinSignedText, JoinResponseSchema, type JoinLink } from '../protocol/join.js';
import { listProjects, projectNameFor, saveProject, volunteerKey } from './projects.js';

/**
 * Joining a project from a join link ([crowd]): what `crowdbake join LINK` and the desktop
 * app's first-run screen both run. The link is the volunteer's own input (pasted, or opened
 * from a crowdbake: URL); it names the master, and what this sends there is only this
 * worker's new public credential and the invite code.
 */

/** Why this agent cannot join `link` again (it already serves that project or master), or null. */
export function joinedAlready(dataDir: string, link: JoinLink): string | null {
  const project = projectNameFor(link.farm, link.master);
  const already = listProjects(dataDir).find((p) => p.name === project || p.master === link.master);
  return already ? `this agent already joined ${already.master} as ${already.worker} (project "${already.name}"); \`crowdbake leave ${already.name}\` first to join again` : null;
}

export interface JoinResult { project: string; worker: string; farm: string; volunteerName: string; trust: string; labels: string[] }

/**
 * Makes this worker's credential, registers it with the master, and only on success writes
 * DATA/projects/<project>.json and .key (0600). The invite code goes to the master once and
 * is written nowhere. Throws the master's reason on refusal.
 */
export async function join(link: JoinLink, o: { dataDir: string; worker: string; displayName: string; listed: boolean; volunteerKeyFile?: string }): Promise<JoinResult> {
  const vol = volunteerKey(o.dataDir, o.volunteerKeyFile);
  const secret = randomBytes(32).toString('base64url');
  const pair = generateKeyPairSync('ed25519');
  const workerKey = pair.publicKey.export({ type: 'spki', format: 'der' }).toString('base64');
  const tokenHash = createHash('sha256').update(secret).digest('hex');
  const req = { worker: o.worker, tokenHash, workerKey, ...(link.code ? { code: link.code } : {}) };
  const volunteerSignature = sign(null, Buffer.from(joinSignedText(req)), vol.privateKey).toString('base64');
  const body = JSON.stringify({ ...req, volunteerKey: vol.publicKey, volunteerSignature, displayName: o.displayName, listed: o.listed });

  const res = await post(`${link.master}/api/v1/join`, body, link.pin);
  let parsed: unknown;
  try { parsed = JSON.parse(res.body); } catch { parsed = null; }
  if (res.status !== 201) {
    const p = (parsed ?? {}) as { error?: unknown; reason?: unknown };
    const why = typeof p.error === 'string' ? p.error : `HTTP ${res.status}`;
    throw new Error(`the master at ${link.master} refused to let this worker join: ${why}${typeof p.reason === 'string' ? ` (${p.reason})` : ''}`);
  }
  const ok = JoinResponseSchema.safeParse(parsed);
  if (!ok.success) throw new Error(`the master at ${link.master} answered the join with something unexpected (${ok.error.issues[0]?.path.join('.')}: ${ok.error.issues[0]?.message})`);
  const project = projectNameFor(link.farm ?? ok.data.farm, link.master);
  vol.save();
  saveProject(o.dataDir, project, {
    master: link.master, worker: ok.data.worker, token: `cbw1.${ok.data.worker}.${secret}`, pin: link.pin ?? null, share: 1,
    farm: ok.data.farm.slice(0, 100), joinedAt: new Date().toISOString(),
  }, pair.privateKey.export({ type: 'pkcs8', format: 'pem' }).toString());
  return { project, worker: ok.data.worker, farm: ok.data.farm, volunteerName: ok.data.volunteer.displayName, trust: ok.data.volunteer.trust, labels: ok.data.labels };
}

/**
 * POSTs `body`. With a pin, the TLS connection is made and its certificate checked against the
 * pin before the request (and the invite code in it) is written: an impostor gets nothing.
 */
async function post(url: string, body: string, pin: string | undefined): Promise<{ status: number; body: string }> {
  const u = new URL(url);
  const opts: RequestOptions = { method: 'POST', headers: { 'content-type': 'application/json', 'content-length': Buffer.byteLength(body) }, timeout: 30_000 };
  let socket: TLSSocket | undefined;
  if (pin && u.protocol === 'https:') {
    socket = await new Promise<TLSSocket>((ok, fail) => {
      const s = tlsConnect({ host: u.hostname, port: Number(u.port || 443), servername: /^[\d.]+$|:/.test(u.hostname) ? undefined : u.hostname, rejectUnauthorized: false, ALPNProtocols: ['http/1.1'] });
      s.once('secureConnect', () => {
        const der = s.getPeerCertificate().raw;
        const seen = der ? `sha256:${createHash('sha256').update(der).digest('hex')}` : 'no certificate';
        if (seen !== pin.toLowerCase()) {
          s.destroy();
          fail(new Error(`the master at ${u.origin} is not the one the join link names: its certificate is ${seen}, the link pins ${pin}. Nothing was sent`));
        } else ok(s);
      });
      s.once('error', (e) => fail(new Error(`cannot reach the master at ${u.origin}: ${e.message}`)));
    });
  }
  const send = u.protocol === 'https:' ? httpsRequest : httpRequest;
  return new Promise((ok, fail) => {
    const r = send(u, { ...opts, ...(socket ? { createConnection: () => socket } : {}) }, (res: IncomingMessage) => {
      const chunks: Buffer[] = [];
      let size = 0;
      res.on('data', (c: Buffer) => { size += c.length; if (size <= 1_000_000) chunks.push(c); else res.destroy(); });
      res.on('end', () => ok({ status: res.statusCode ?? 0, body: Buffer.concat(chunks).toString('utf8') }));
      res.on('error', (e) => fail(e));
    });
    r.on('timeout', () => r.destroy(new Error('no answer in 30s')));
    r.on('error', (e) => fail(new Error(`cannot reach the master at ${u.origin}: ${e.message}${/self.signed|certificate/i.test(e.message) ? ' (its certificate is not trusted by this system and the link holds no pin; ask for a link from `crowdbake invite create`)' : ''}`)));
    r.end(body);
  });
}

export function defaultWorkerName(): string {
  const host = hostname().toLowerCase().split('.')[0]!.replace(/[^a-z0-9-]+/g, '-').replace(/^-+|-+$/g, '').slice(0, 40) || 'worker';
  return `${host}-${randomBytes(3).toString('hex')}`;
}

export function defaultDisplayName(): string {
  try { return userInfo().username || 'volunteer'; } catch { return 'volunteer'; }
}
