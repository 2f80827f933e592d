import { spawn, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdirSync, writeFileSync } from 'node:fs';
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { dirname, join } from 'node:path';

/**
 * A LOCAL STAND-IN FOR THE EC2 API (no cloud is reachable from the test machines). It speaks
 * the EC2 Query protocol the AWS SDK v3 uses — `POST /` with a form-encoded body
 * (`Action=RunInstances&Version=2016-11-15&…`, lists as `Name.N`), SigV4-signed, answered
 * with XML in the 2016-11-15 namespace or an `<Errors>` document — for RunInstances
 * (on-demand, and spot through InstanceMarketOptions), DescribeInstances (tag and state
 * filters), TerminateInstances, StopInstances, StartInstances and CreateTags.
 *
 * Its "instances" are real processes: the user-data the master sent is run with `/bin/sh`,
 * as cloud-init would, in a directory of its own (HOME) with a clean environment. The only
 * change made to it is the one a hypervisor makes: the link-local metadata address
 * (http://169.254.169.254) is routed to this server's per-instance metadata service on
 * loopback (`/imds/<instance-id>`: IMDSv2 token, spot/instance-action). Terminating an
 * instance kills its process group (power off); stopping sends SIGTERM (a shutdown).
 */
export interface StandInInstance {
  id: string;
  type: string;
  spot: boolean;
  state: 'pending' | 'running' | 'stopping' | 'stopped' | 'shutting-down' | 'terminated';
  tags: Map<string, string>;
  launchTime: Date;
  userData: string;
  dir: string;
  process: ChildProcess | null;
  output: string;
  /** Set by interrupt(): what the metadata service's spot/instance-action answers. */
  notice: { action: string; time: string } | null;
  imageId: string | null;
  subnetId: string | null;
  securityGroups: string[];
  metadataTokens: string | null;
}

export interface Ec2StandIn {
  url: string;
  instances: Map<string, StandInInstance>;
  /** Every API call, in order: its Action and the access key id it was signed with. */
  calls: { action: string; accessKeyId: string | null; params: URLSearchParams }[];
  /** Makes RunInstances refuse an instance type / market with this error code (InsufficientInstanceCapacity, Unsupported, …). */
  refuse(type: string, spot: boolean | 'any', code: string): void;
  /** An instance made outside the master (a leak): tags and age given, no process. */
  inject(tags: Record<string, string>, ageMs: number): StandInInstance;
  /** Sends a spot interruption notice to an instance (its metadata service answers it from now on). */
  interrupt(id: string): void;
  live(): StandInInstance[];
  close(): Promise<void>;
}

const NS = 'http://ec2.amazonaws.com/doc/2016-11-15/';
const STATE_CODES: Record<StandInInstance['state'], number> = { pending: 0, running: 16, 'shutting-down': 32, terminated: 48, stopping: 64, stopped: 80 };
const esc = (s: string) => s.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;').replace(/"/g, '&quot;');

export async function startEc2StandIn(root: string): Promise<Ec2StandIn> {
  const instances = new Map<string, StandInInstance>();
  const calls: Ec2StandIn['calls'] = [];
  const refusals: { type: string; spot: boolean | 'any'; code: string }[] = [];
  const imdsTokens = new Map<string, string>();
  let server!: Server;
  let url = '';

  const list = (p: URLSearchParams, prefix: string): string[] => {
    const out: string[] = [];
    for (let i = 1; p.has(`${prefix}.${i}`); i++) out.push(p.get(`${prefix}.${i}`)!);
    return out;
  };
  const tagsOf = (p: URLSearchParams, prefix: string): [string, string][] => {
    const out: [string, string][] = [];
    for (let i = 1; p.has(`${prefix}.${i}.Key`); i++) out.push([p.get(`${prefix}.${i}.Key`)!, p.get(`${prefix}.${i}.Value`) ?? '']);
    return out;
  };
  const itemXml = (i: StandInInstance) => `<item><instanceId>${i.id}</instanceId><imageId>${esc(i.imageId ?? '')}</imageId>`
    + `<instanceState><code>${STATE_CODES[i.state]}</code><name>${i.state}</name></instanceState>`
    + `<instanceType>${esc(i.type)}</instanceType><launchTime>${i.launchTime.toISOString()}</launchTime>`
    + (i.spot ? '<instanceLifecycle>spot</instanceLifecycle>' : '')
    + `<tagSet>${[...i.tags].map(([k, v]) => `<item><key>${esc(k)}</key><value>${esc(v)}</value></item>`).join('')}</tagSet></item>`;
  const stateChange = (name: string, changed: { i: StandInInstance; prev: StandInInstance['state'] }[]) =>
    `<${name}Response xmlns="${NS}"><requestId>${randomBytes(8).toString('hex')}</requestId><instancesSet>${changed.map(({ i, prev }) => `<item><instanceId>${i.id}</instanceId>`
      + `<currentState><code>${STATE_CODES[i.state]}</code><name>${i.state}</name></currentState><previousState><code>${STATE_CODES[prev]}</code><name>${prev}</name></previousState></item>`).join('')}</instancesSet></${name}Response>`;

  class ApiError extends Error { constructor(readonly code: string, message: string, readonly status = 400) { super(message); } }

  const boot = (i: StandInInstance) => {
    // The hypervisor's route for the link-local metadata address, to this instance's own service.
    const script = i.userData.replaceAll('http://169.254.169.254', `${url}/imds/${i.id}`);
    writeFileSync(join(i.dir, 'user-data'), script, { mode: 0o700 });
    const child = spawn('/bin/sh', [join(i.dir, 'user-data')], {
      cwd: i.dir, detached: true, stdio: ['ignore', 'pipe', 'pipe'],
      env: { PATH: `${dirname(process.execPath)}:/usr/local/bin:/usr/bin:/bin:/usr/sbin:/sbin`, HOME: join(i.dir, 'home'), LANG: 'C.UTF-8' },
    });
    i.process = child;
    i.state = 'running';
    for (const s of [child.stdout!, child.stderr!]) s.on('data', (c: Buffer) => { i.output += c.toString(); });
    child.on('exit', () => {
      i.process = null;
      if (i.state === 'stopping') i.state = 'stopped';
    });
  };
  const powerOff = (i: StandInInstance, signal: NodeJS.Signals) => {
    if (i.process?.pid) { try { process.kill(-i.process.pid, signal); } catch { /* gone */ } }
  };

  const actions: Record<string, (p: URLSearchParams) => string> = {
    RunInstances: (p) => {
      const type = p.get('InstanceType') ?? 'm5.large';
      const spot = p.get('InstanceMarketOptions.MarketType') === 'spot';
      const refusal = refusals.find((r) => r.type === type && (r.spot === 'any' || r.spot === spot));
      if (refusal) throw new ApiError(refusal.code, `We currently do not have sufficient ${type} capacity${spot ? ' for spot' : ''} (stand-in).`);
      if (p.get('MinCount') !== '1' || p.get('MaxCount') !== '1') throw new ApiError('InvalidParameterValue', 'the stand-in launches one instance at a time');
      const id = `i-${randomBytes(8).toString('hex')}`;
      const dir = join(root, id);
      mkdirSync(join(dir, 'home'), { recursive: true });
      const tags = new Map<string, string>();
      for (let n = 1; p.has(`TagSpecification.${n}.ResourceType`); n++) {
        if (p.get(`TagSpecification.${n}.ResourceType`) === 'instance') for (const [k, v] of tagsOf(p, `TagSpecification.${n}.Tag`)) tags.set(k, v);
      }
      const i: StandInInstance = {
        id, type, spot, state: 'pending', tags, launchTime: new Date(), userData: Buffer.from(p.get('UserData') ?? '', 'base64').toString('utf8'),
        dir, process: null, output: '', notice: null, imageId: p.get('ImageId'), subnetId: p.get('SubnetId'), securityGroups: list(p, 'SecurityGroupId'),
        metadataTokens: p.get('MetadataOptions.HttpTokens'),
      };
      instances.set(id, i);
      setTimeout(() => { if (i.state === 'pending') boot(i); }, 50).unref();
      return `<RunInstancesResponse xmlns="${NS}"><requestId>${randomBytes(8).toString('hex')}</requestId><reservationId>r-${randomBytes(8).toString('hex')}</reservationId>`
        + `<ownerId>000000000000</ownerId><instancesSet>${itemXml(i)}</instancesSet></RunInstancesResponse>`;
    },
    DescribeInstances: (p) => {
      let found = [...instances.values()];
      const ids = list(p, 'InstanceId');
      if (ids.length) found = found.filter((i) => ids.includes(i.id));
      for (let n = 1; p.has(`Filter.${n}.Name`); n++) {
        const name = p.get(`Filter.${n}.Name`)!;
        const values = list(p, `Filter.${n}.Value`);
        if (name === 'instance-state-name') found = found.filter((i) => values.includes(i.state));
        else if (name.startsWith('tag:')) found = found.filter((i) => values.includes(i.tags.get(name.slice(4)) ?? '\u0000'));
        else throw new ApiError('InvalidParameterValue', `the stand-in has no filter ${name}`);
      }
      return `<DescribeInstancesResponse xmlns="${NS}"><requestId>${randomBytes(8).toString('hex')}</requestId><reservationSet>`
        + found.map((i) => `<item><reservationId>r-${i.id.slice(2)}</reservationId><ownerId>000000000000</ownerId><instancesSet>${itemXml(i)}</instancesSet></item>`).join('')
        + '</reservationSet></DescribeInstancesResponse>';
    },
    TerminateInstances: (p) => stateChange('TerminateInstances', known(list(p, 'InstanceId')).map((i) => {
      const prev = i.state;
      powerOff(i, 'SIGKILL');
      i.state = 'terminated';
      return { i, prev };
    })),
    StopInstances: (p) => stateChange('StopInstances', known(list(p, 'InstanceId')).map((i) => {
      const prev = i.state;
      if (i.state === 'running' || i.state === 'pending') { i.state = i.process ? 'stopping' : 'stopped'; powerOff(i, 'SIGTERM'); }
      return { i, prev };
    })),
    StartInstances: (p) => stateChange('StartInstances', known(list(p, 'InstanceId')).map((i) => {
      const prev = i.state;
      if (i.state === 'stopped') { i.state = 'pending'; setTimeout(() => boot(i), 50).unref(); }
      return { i, prev };
    })),
    CreateTags: (p) => {
      const tags = tagsOf(p, 'Tag');
      for (const i of known(list(p, 'ResourceId'))) for (const [k, v] of tags) i.tags.set(k, v);
      return `<CreateTagsResponse xmlns="${NS}"><requestId>${randomBytes(8).toString('hex')}</requestId><return>true</return></CreateTagsResponse>`;
    },
  };
  const known = (ids: string[]) => ids.map((id) => {
    const i = instances.get(id);
    if (!i) throw new ApiError('InvalidInstanceID.NotFound', `The instance ID '${id}' does not exist`);
    return i;
  });

  const imds = (req: IncomingMessage, res: ServerResponse, id: string, path: string) => {
    const i = instances.get(id);
    if (!i || i.state !== 'running') { res.writeHead(404).end(); return; }
    if (path === '/latest/api/token' && req.method === 'PUT') {
      const token = randomBytes(16).toString('hex');
      imdsTokens.set(token, id);
      res.writeHead(200, { 'content-type': 'text/plain' }).end(token);
      return;
    }
    if (imdsTokens.get(String(req.headers['x-aws-ec2-metadata-token'] ?? '')) !== id) { res.writeHead(401).end(); return; }
    if (path === '/latest/meta-data/spot/instance-action') {
      if (!i.notice) { res.writeHead(404).end(); return; }
      res.writeHead(200, { 'content-type': 'application/json' }).end(JSON.stringify(i.notice));
      return;
    }
    if (path === '/latest/meta-data/instance-id') { res.writeHead(200).end(id); return; }
    res.writeHead(404).end();
  };

  server = createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      const m = /^\/imds\/(i-[0-9a-f]+)(\/.*)$/.exec(req.url ?? '');
      if (m) { imds(req, res, m[1]!, m[2]!); return; }
      const p = new URLSearchParams(Buffer.concat(chunks).toString('utf8'));
      const action = p.get('Action') ?? '';
      const accessKeyId = /Credential=([^/]+)\//.exec(String(req.headers.authorization ?? ''))?.[1] ?? null;
      calls.push({ action, accessKeyId, params: p });
      try {
        if (req.method !== 'POST' || p.get('Version') !== '2016-11-15') throw new ApiError('InvalidAction', 'expected POST with Version=2016-11-15');
        if (!accessKeyId) throw new ApiError('AuthFailure', 'the request is not signed (AWS4-HMAC-SHA256)', 401);
        const handler = actions[action];
        if (!handler) throw new ApiError('InvalidAction', `The action ${action} is not valid for this web service (stand-in).`);
        const xml = handler(p);
        res.writeHead(200, { 'content-type': 'text/xml;charset=UTF-8' }).end(`<?xml version="1.0" encoding="UTF-8"?>\n${xml}`);
      } catch (e) {
        const err = e instanceof ApiError ? e : new ApiError('InternalError', (e as Error).message, 500);
        res.writeHead(err.status, { 'content-type': 'text/xml;charset=UTF-8' })
          .end(`<?xml version="1.0" encoding="UTF-8"?>\n<Response><Errors><Error><Code>${esc(err.code)}</Code><Message>${esc(err.message)}</Message></Error></Errors><RequestID>${randomBytes(8).toString('hex')}</RequestID></Response>`);
      }
    });
  });
  await new Promise<void>((ok) => server.listen(0, '127.0.0.1', ok));
  url = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;

  return {
    url, instances, calls,
    refuse: (type, spot, code) => { refusals.push({ type, spot, code }); },
    inject: (tags, ageMs) => {
      const id = `i-${randomBytes(8).toString('hex')}`;
      const i: StandInInstance = {
        id, type: 't3.small', spot: false, state: 'running', tags: new Map(Object.entries(tags)), launchTime: new Date(Date.now() - ageMs),
        userData: '', dir: join(root, id), process: null, output: '', notice: null, imageId: null, subnetId: null, securityGroups: [], metadataTokens: null,
      };
      instances.set(id, i);
      return i;
    },
    interrupt: (id) => {
      const i = instances.get(id);
      if (!i) throw new Error(`no instance ${id}`);
      i.notice = { action: 'terminate', time: new Date(Date.now() + 120_000).toISOString() };
    },
    live: () => [...instances.values()].filter((i) => i.state !== 'terminated'),
    close: async () => {
      for (const i of instances.values()) powerOff(i, 'SIGKILL');
      const closed = new Promise<void>((ok) => server.close(() => ok()));
      server.closeAllConnections();
      await closed;
    },
  };
}
