import WebSocket from 'ws';
import { DashboardEventSchema, type BuildView } from '../../protocol/api.js';
import { parse, secret, str, UsageError, warnSecretOnCommandLine } from '../args.js';

const HELP = `usage: crowdbake build BUILDER [--master URL] [--token-file F] [--revision REV] [--branch B] [--reason TEXT] [--wait]

  --master URL    the master's base URL (default: http://127.0.0.1:8585)
  --token-file F  a file holding the admin token, e.g. DATA/admin.token (default: $CROWDBAKE_ADMIN_TOKEN;
                  --token T works too, visible to other local users)
  --revision REV  build this revision instead of the branch head
  --branch B      clone this branch instead of the builder's
  --wait          stream the log; exit 0 on success, 1 otherwise
Prints the new build's id.
`;

export async function buildCommand(argv: string[]): Promise<number> {
  const { values, positionals } = parse(argv, {
    master: { type: 'string' }, token: { type: 'string' }, 'token-file': { type: 'string' }, revision: { type: 'string' }, branch: { type: 'string' }, reason: { type: 'string' },
    wait: { type: 'boolean' },
  }, 1);
  if (values.help) { process.stdout.write(HELP); return 0; }
  const builder = positionals[0];
  if (!builder) throw new UsageError('which BUILDER? (crowdbake build BUILDER)');
  const base = (str(values, 'master') ?? 'http://127.0.0.1:8585').replace(/\/+$/, '').replace(/^ws/, 'http');
  const token = secret(values, 'token', 'CROWDBAKE_ADMIN_TOKEN');
  if (!token) throw new UsageError('--token-file FILE (or CROWDBAKE_ADMIN_TOKEN) is required: the master\'s admin token (DATA/admin.token)');
  try { new URL(base); } catch { throw new UsageError(`--master "${base}" is not a URL`); }
  warnSecretOnCommandLine(values, 'token', 'CROWDBAKE_ADMIN_TOKEN');

  // Subscribe before asking, so no line of the log is missed.
  const stream = values.wait ? await openEvents(base, token) : null;
  const body: Record<string, string> = {};
  if (str(values, 'revision')) body.revision = str(values, 'revision')!;
  if (str(values, 'branch')) body.branch = str(values, 'branch')!;
  if (str(values, 'reason')) body.reason = str(values, 'reason')!;
  let res: Response;
  try {
    res = await fetch(`${base}/api/v1/builders/${encodeURIComponent(builder)}/builds`, {
      method: 'POST', headers: { authorization: `Bearer ${token}`, 'content-type': 'application/json' }, body: JSON.stringify(body),
    });
  } catch (e) {
    stream?.close();
    throw new Error(`cannot reach the master at ${base}: ${(e as Error).cause ?? (e as Error).message}`);
  }
  const answer = (await res.json().catch(() => ({}))) as { id?: number; error?: string };
  if (res.status !== 201 || typeof answer.id !== 'number') {
    stream?.close();
    throw new Error(`the master refused: ${answer.error ?? `HTTP ${res.status}`}`);
  }
  console.log(answer.id);
  if (!stream) return 0;
  const final = await stream.follow(answer.id);
  console.error(`build ${final.id} ${final.result}${final.message ? `: ${final.message}` : ''}`);
  return final.result === 'success' ? 0 : 1;
}

async function openEvents(base: string, token: string): Promise<{ follow(id: number): Promise<BuildView>; close(): void }> {
  // The token too: a master with `public: false` streams events only to it.
  const ws = new WebSocket(`${base.replace(/^http/, 'ws')}/api/v1/events`, { headers: { authorization: `Bearer ${token}` } });
  await new Promise<void>((ok, fail) => {
    ws.once('open', () => ok());
    ws.once('error', (e) => fail(new Error(`cannot reach the master at ${base}: ${e.message}`)));
  });
  let target: number | null = null;
  const early: string[] = [];
  const finishedEarly = new Map<number, BuildView>();
  let resolveFinal: ((b: BuildView) => void) | null = null;
  let rejectFinal: ((e: Error) => void) | null = null;
  ws.on('message', (data) => {
    const parsed = DashboardEventSchema.safeParse(JSON.parse(data.toString()));
    if (!parsed.success) return;
    const e = parsed.data;
    if (e.type === 'log') {
      if (target === null) early.push(JSON.stringify(e));
      else if (e.buildId === target) process.stdout.write(e.data);
    } else if (e.type === 'build' && e.build.state === 'finished') {
      if (target === null) finishedEarly.set(e.build.id, e.build);
      else if (e.build.id === target) resolveFinal?.(e.build);
    }
  });
  ws.on('close', () => rejectFinal?.(new Error('lost the connection to the master while waiting')));
  return {
    close: () => ws.close(),
    follow: (id) => new Promise<BuildView>((ok, fail) => {
      target = id;
      for (const raw of early.splice(0)) {
        const e = JSON.parse(raw) as { buildId: number; data: string };
        if (e.buildId === id) process.stdout.write(e.data);
      }
      resolveFinal = (b) => { rejectFinal = null; ws.close(); ok(b); };
      rejectFinal = fail;
      const done = finishedEarly.get(id);
      if (done) resolveFinal(done);
    }),
  };
}
