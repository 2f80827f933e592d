import { existsSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { startMaster } from '../../master/master.js';
import { defaultCacheDir } from '../../worker/executors/detect.js';
import { localVmGuestBuilder } from '../local-vm-guest.js';
import { duration, hostPort, oneOf, parse, str, UsageError } from '../args.js';
import { log, LOG_FORMATS, setLogFormat } from '../../master/log.js';
import { defaultDataDir } from '../paths.js';
import { untilSignal } from '../signals.js';

const HELP = `usage: crowdbake master [--config DIR] [--data DIR] [--listen HOST:PORT] [--store URL] [--log-format plain|json]

  --config DIR        holds crowdbake.yml and builders/*.yml (default: .)
  --data DIR          SQLite store, logs, artifacts, admin.token (default: ${defaultDataDir('master')})
  --listen HOST:PORT  where to serve the API, dashboard and workers (default: 127.0.0.1:8585)
  --tls-cert FILE     serve https/wss with this PEM certificate (and --tls-key FILE); workers pin
                      its fingerprint, which \`crowdbake token create\` prints
  --store URL         sqlite:PATH (default DATA/crowdbake.db) or postgres://USER:PASS@HOST:PORT/DB
  --log-format F      plain (default: lines for people, "crowdbake master: …") or json (one JSON
                      object a line on stderr, through pino: level, time, msg, err)
  --heartbeat D       how often workers are pinged; one silent interval drops a worker (default 15s)
  --lease D           several masters on one PostgreSQL: this master's lease on its running builds,
                      renewed every third of it (default 60s; keep it above 3 heartbeats and a reconnect, so that
                      the workers of a paused master reach another one before its builds are requeued)

Builder files are reloaded when they change. Writes to the REST API need the admin token
from DATA/admin.token (or CROWDBAKE_ADMIN_TOKEN).
`;

export async function masterCommand(argv: string[]): Promise<number> {
  const { values } = parse(argv, {
    config: { type: 'string' }, data: { type: 'string' }, listen: { type: 'string' }, store: { type: 'string' },
    'tls-cert': { type: 'string' }, 'tls-key': { type: 'string' }, 'log-format': { type: 'string' },
    heartbeat: { type: 'string' }, lease: { type: 'string' },
  });
  if (values.help) { process.stdout.write(HELP); return 0; }
  const logFormat = oneOf(values, 'log-format', LOG_FORMATS, 'plain');
  setLogFormat(logFormat);
  // Plain: the start lines on stdout, as before; json: every line through the log.
  const say = logFormat === 'json' ? log.info : (line: string): void => console.log(`crowdbake master: ${line}`);
  const configDir = resolve(str(values, 'config') ?? '.');
  if (!existsSync(configDir)) throw new UsageError(`--config "${configDir}" does not exist`);
  const listen = str(values, 'listen');
  const hp = listen ? hostPort(listen, 'listen') : null;
  const storeUrl = str(values, 'store');
  const heartbeatMs = duration(values, 'heartbeat');
  const leaseMs = duration(values, 'lease');
  if (heartbeatMs !== undefined && heartbeatMs < 100) throw new UsageError('--heartbeat must be at least 100ms');
  if (leaseMs !== undefined && leaseMs < 300) throw new UsageError('--lease must be at least 300ms');
  const certFile = str(values, 'tls-cert');
  const keyFile = str(values, 'tls-key');
  if ((certFile === undefined) !== (keyFile === undefined)) throw new UsageError('--tls-cert and --tls-key go together');
  const master = await startMaster({
    configDir, dataDir: str(values, 'data') ?? defaultDataDir('master'),
    ...(hp ? { host: hp.host, port: hp.port } : {}),
    ...(storeUrl ? { storeUrl } : {}),
    ...(heartbeatMs !== undefined ? { heartbeatMs } : {}),
    ...(leaseMs !== undefined ? { leaseMs } : {}),
    ...(certFile && keyFile ? { tls: { certFile, keyFile } } : {}),
    localVmGuest: localVmGuestBuilder(join(defaultCacheDir(), 'local-vm')),
  });
  if (master.fingerprint) say(`TLS certificate ${master.fingerprint} (workers pass it as --pin)`);
  const builders = master.registry.list();
  say(`${builders.length} builder(s) from ${configDir}/builders`);
  say(`dashboard and API at ${master.url}/`);
  say(`workers connect to ${master.url.replace(/^http/, 'ws')}/api/v1/worker`);
  await untilSignal();
  say('shutting down');
  await master.close();
  return 0;
}
