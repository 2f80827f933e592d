import { execFileSync } from 'node:child_process';
import { cpSync, existsSync, mkdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { randomBytes } from 'node:crypto';
import { parseDocument } from 'yaml';
import type { ArtifactView, BuildView } from '../../protocol/api.js';
import { startMaster, type MasterHandle } from '../../master/master.js';
import { startGitHttpServer } from '../../master/sources/git-http-server.js';
import { openStore } from '../../master/store/open-store.js';
import { createWorkerToken } from '../../master/tokens.js';
import { startWorker } from '../../worker/agent.js';
import { detectExecutors } from '../../worker/executors/detect.js';
import { parse, port, str } from '../args.js';
import { defaultDataDir } from '../paths.js';
import { untilSignal } from '../signals.js';

const HELP = `usage: crowdbake demo [--port P] [--data DIR] [--no-open] [--once]

One process: a master on the embedded SQLite store, a local worker with the best executor
available here, and the sample project in examples/hello. Forces one build, streams its log,
and prints the dashboard URL and the admin token.

  --port P     the master's port on 127.0.0.1 (default 8585; 0 picks a free one)
  --data DIR   where the demo keeps its store, repository and work (default: ${defaultDataDir('demo')})
  --no-open    do not open the dashboard in a browser
  --once       exit after the build: 0 if it succeeded, 1 if not
`;

const EXAMPLES = fileURLToPath(new URL('../../../examples/', import.meta.url));

export async function demoCommand(argv: string[]): Promise<number> {
  const { values } = parse(argv, {
    port: { type: 'string' }, data: { type: 'string' }, 'no-open': { type: 'boolean' }, once: { type: 'boolean' },
  });
  if (values.help) { process.stdout.write(HELP); return 0; }
  const dataDir = resolve(str(values, 'data') ?? defaultDataDir('demo'));
  const say = (s: string) => console.log(`demo: ${s}`);
  mkdirSync(dataDir, { recursive: true });

  const detected = await detectExecutors('demo-probe', 'auto');
  let executor: 'container' | 'host' = 'container';
  if (!detected.executors.some((e) => e.kind === 'container')) {
    executor = 'host';
    say(`containers are not available here (${detected.unavailable.container ?? 'unknown reason'});`);
    say('the sample build runs on the host executor instead (see scripts/install-system-deps.sh for podman)');
  }

  // Builds fetch only https://, http:// or git:// URLs, never a path: the sample repository is
  // served read-only over HTTP on 127.0.0.1, next to the master (also on loopback, so this
  // computer's worker may fetch from loopback).
  const reposDir = join(dataDir, 'repos');
  makeSampleRepo(join(reposDir, 'hello.git'));
  const gitServer = await startGitHttpServer({ root: reposDir });
  const configDir = join(dataDir, 'config');
  writeBuilder(configDir, gitServer.urlOf('hello.git'), executor);
  const master = await startMaster({
    configDir, dataDir: join(dataDir, 'master'), host: '127.0.0.1', port: port(values, 'port') ?? 8585,
  });
  say(`master listening at ${master.url}`);
  const token = await demoToken(dataDir);
  const worker = await startWorker({ preferences: { when: 'always' }, idleSource: 'none',
    master: master.url, token, dataDir: join(dataDir, 'worker'), executor, labels: ['demo'],
    log: (l) => say(`worker: ${l}`),
  });
  let result: BuildView | null = null;
  try {
    result = await forceAndFollow(master, say);
  } catch (e) {
    say(`the build could not run: ${(e as Error).message}`);
  }
  if (result) {
    say(`build ${result.id} finished: ${result.result}${result.message ? ` (${result.message})` : ''}`);
    const arts = (await (await fetch(`${master.url}/api/v1/builds/${result.id}/artifacts`)).json()) as ArtifactView[];
    for (const a of arts) say(`artifact ${a.name}  ${a.size} bytes  sha256 ${a.sha256}`);
  }
  console.log('');
  console.log(`Dashboard:   ${master.url}/`);
  console.log(`Admin token: ${master.adminToken}`);
  console.log(`Build again: crowdbake build hello --master ${master.url} --token ${master.adminToken} --wait`);
  const ok = result?.result === 'success';
  if (values.once) {
    await worker.close();
    await master.close();
    await gitServer.close();
    return ok ? 0 : 1;
  }
  if (!values['no-open']) openBrowser(`${master.url}/`);
  console.log('Press Ctrl-C to stop.');
  await untilSignal();
  await worker.close();
  await master.close();
  await gitServer.close();
  return 0;
}

/** A git repository holding examples/hello, committed once, so the build checks out a real revision. */
function makeSampleRepo(repo: string): string {
  if (existsSync(join(repo, '.git'))) return repo;
  rmSync(repo, { recursive: true, force: true });
  mkdirSync(dirname(repo), { recursive: true });
  cpSync(join(EXAMPLES, 'hello'), repo, { recursive: true });
  const git = (...args: string[]) => execFileSync('git', ['-c', 'user.name=Crowdbake demo', '-c', 'user.email=demo@crowdbake.invalid', ...args], { cwd: repo, stdio: 'pipe' });
  try {
    git('init', '-q', '-b', 'main');
    git('add', '-A');
    git('commit', '-q', '-m', 'hello 1.0');
  } catch (e) {
    throw new Error(`cannot make the sample repository with git (is git installed?): ${(e as Error).message}`);
  }
  return repo;
}

function writeBuilder(configDir: string, url: string, executor: 'container' | 'host'): void {
  const doc = parseDocument(readFileSync(join(EXAMPLES, 'builders', 'hello.yml'), 'utf8'));
  doc.setIn(['source', 'git'], url);
  if (executor === 'host') doc.setIn(['requires', 'executor'], 'host');
  mkdirSync(join(configDir, 'builders'), { recursive: true });
  writeFileSync(join(configDir, 'builders', 'hello.yml'), doc.toString());
}

async function demoToken(dataDir: string): Promise<string> {
  const file = join(dataDir, 'worker.token');
  if (existsSync(file)) return readFileSync(file, 'utf8').trim();
  const store = await openStore(`sqlite:${join(dataDir, 'master', 'crowdbake.db')}`);
  try {
    const token = await createWorkerToken(store, `demo-${randomBytes(3).toString('hex')}`, ['demo']);
    writeFileSync(file, `${token}\n`, { mode: 0o600 });
    return token;
  } finally {
    await store.close();
  }
}

async function forceAndFollow(master: MasterHandle, say: (s: string) => void): Promise<BuildView> {
  let id: number | null = null;
  const early: { buildId: number; data: string }[] = [];
  let finished!: (b: BuildView) => void;
  const done = new Promise<BuildView>((ok) => { finished = ok; });
  const seen = new Map<number, BuildView>();
  const unsubscribe = master.events.subscribe((e) => {
    if (e.type === 'log') {
      if (id === null) early.push(e);
      else if (e.buildId === id) process.stdout.write(indent(e.data));
    } else if (e.type === 'build' && e.build.state === 'finished') {
      if (id === null) seen.set(e.build.id, e.build);
      else if (e.build.id === id) finished(e.build);
    }
  });
  const res = await fetch(`${master.url}/api/v1/builders/hello/builds`, {
    method: 'POST', headers: { authorization: `Bearer ${master.adminToken}`, 'content-type': 'application/json' },
    body: JSON.stringify({ reason: 'crowdbake demo' }),
  });
  const body = (await res.json()) as { id?: number; error?: string };
  if (res.status !== 201 || body.id === undefined) throw new Error(body.error ?? `HTTP ${res.status}`);
  id = body.id;
  say(`forced build ${id} of builder hello; its log follows`);
  for (const e of early) if (e.buildId === id) process.stdout.write(indent(e.data));
  const already = seen.get(id);
  if (already) finished(already);
  try {
    return await done;
  } finally {
    unsubscribe();
  }
}

function indent(text: string): string {
  return text.replace(/^(?=.)/gm, '  | ');
}

function openBrowser(url: string): void {
  if (!process.env.DISPLAY && !process.env.WAYLAND_DISPLAY) return;
  try {
    execFileSync('xdg-open', [url], { stdio: 'ignore', timeout: 5000 });
  } catch { /* no browser: the URL is printed above */ }
}
