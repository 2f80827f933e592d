import { execFileSync, spawn, type ChildProcess } from 'node:child_process';
import { copyFileSync, existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { fileURLToPath } from 'node:url';
import { startGitHttpServer } from '../../master/sources/git-http-server.js';
import { freePort } from '../helpers/ports.js';

/**
 * A real BuildBot 3.7 master (Debian's `buildbot` package) on 127.0.0.1 in a temp dir, with
 * test/buildbot/master.cfg, a git repository and a file to download; plus the stock
 * `buildbot-worker` (msgpack) for comparison. Everything started here is stopped by pid.
 */

export const ROOT = fileURLToPath(new URL('../../../', import.meta.url));
const PY_ENV = { PATH: `/usr/bin:/bin:${process.env.PATH ?? ''}` };

export interface StepResult { name: string; results: number | null; state: string; logs: Record<string, string> }
export interface BuildResult { buildid: number; results: number | null; state: string; steps: StepResult[] }
export const RESULT = { SUCCESS: 0, WARNINGS: 1, FAILURE: 2, SKIPPED: 3, EXCEPTION: 4, RETRY: 5, CANCELLED: 6 } as const;

export interface Lab {
  dir: string;
  webPort: number;
  /** The BuildBot master's process (for its memory in the bench). */
  masterPid: number;
  msgpackUrl: string;
  uploadDir: string;
  get<T>(path: string): Promise<T>;
  /** Forces a build of BUILDER@WORKER; resolves with its build request id. */
  force(builder: string): Promise<number>;
  /** The build made for a request, once it finished (or it is running, with `running`). */
  build(brid: number, opts?: { running?: boolean; timeoutMs?: number }): Promise<BuildResult>;
  stopBuild(buildid: number): Promise<void>;
  waitConnected(name: string, timeoutMs?: number): Promise<void>;
  stop(): Promise<void>;
}

export { freePort };

/**
 * Creates and starts a master with these workers (name = password prefix "pw-"), all builders
 * or only those named; `keepaliveSeconds` shortens the master's hourly keepalive to each worker;
 * `masterCfg` replaces test/buildbot/master.cfg.
 */
export async function startLab(workers: string[], builders?: string[], opts: { keepaliveSeconds?: number; masterCfg?: string } = {}): Promise<Lab> {
  // Its ports are chosen free (freePort) seconds before Python binds them; a test alongside
  // may bind one meanwhile. Only that failure is tried again, on other ports.
  for (let tries = 1; ; tries++) {
    try {
      return await startLabOnce(workers, builders, opts);
    } catch (e) {
      if (tries >= 3 || !/Couldn't listen on|Address already in use|CannotListenError/.test((e as Error).message)) throw e;
    }
  }
}

async function startLabOnce(workers: string[], builders: string[] | undefined, opts: { keepaliveSeconds?: number; masterCfg?: string }): Promise<Lab> {
  const dir = mkdtempSync(join(tmpdir(), 'crowdbake-bblab-'));
  const [webPort, msgpackPort] = [await freePort(), await freePort()];
  const masterDir = join(dir, 'master');
  const uploadDir = join(dir, 'uploaded');
  mkdirSync(uploadDir);
  const gitSrc = join(dir, 'gitsrc');
  const git = (...a: string[]): void => { execFileSync('git', a, { env: { ...process.env, GIT_AUTHOR_DATE: '2024-01-01T00:00:00Z', GIT_COMMITTER_DATE: '2024-01-01T00:00:00Z' }, stdio: 'ignore' }); };
  git('-c', 'init.defaultBranch=master', 'init', '-q', gitSrc);
  writeFileSync(join(gitSrc, 'README.txt'), 'hello from the test repository\n');
  git('-C', gitSrc, 'add', 'README.txt');
  git('-C', gitSrc, '-c', 'user.name=t', '-c', 'user.email=t@localhost', 'commit', '-q', '-m', 'init');
  git('clone', '-q', '--bare', gitSrc, join(dir, 'repo.git'));
  writeFileSync(join(dir, 'secret.txt'), 'a file of the volunteer\n');
  writeFileSync(join(dir, 'download_src.txt'), 'downloaded-from-master line1\nline2\n');
  writeStub(join(dir, 'wwwstub'));
  // Host git refuses local repositories and file:// (worker/buildbot/host-git.ts), as a
  // volunteer's worker must: the lab serves its repository over smart HTTP on loopback.
  const gitHttp = await startGitHttpServer({ root: dir });

  execFileSync('buildbot', ['create-master', '-q', '-r', '--db', 'sqlite:///state.sqlite', masterDir], { env: { ...process.env, ...PY_ENV }, stdio: 'pipe' });
  copyFileSync(opts.masterCfg ?? join(ROOT, 'test/buildbot/master.cfg'), join(masterDir, 'master.cfg'));
  writeFileSync(join(masterDir, 'lab.json'), JSON.stringify({
    lab_dir: dir, web_port: webPort, msgpack_port: msgpackPort, upload_dir: uploadDir, builders: builders ?? null,
    keepalive: opts.keepaliveSeconds ?? null,
    workers: workers.map((name) => ({ name, password: `pw-${name}` })),
    git_repo: gitHttp.urlOf('repo.git'), download_src: join(dir, 'download_src.txt'),
  }));
  const master = spawn('buildbot', ['start', '--nodaemon', masterDir], {
    env: { ...process.env, ...PY_ENV, PYTHONPATH: join(dir, 'wwwstub') }, stdio: 'ignore',
  });
  const api = `http://127.0.0.1:${webPort}/api/v2/`;
  const get = async <T>(path: string): Promise<T> => {
    const r = await fetch(api + path);
    if (!r.ok) throw new Error(`GET ${path}: HTTP ${r.status}`);
    return (await r.json()) as T;
  };
  const rpc = async (path: string, method: string, params: Record<string, unknown>): Promise<unknown> => {
    const r = await fetch(api + path, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ jsonrpc: '2.0', method, id: 1, params }) });
    const j = (await r.json()) as { result?: unknown; error?: unknown };
    if (j.error) throw new Error(`${method} ${path}: ${JSON.stringify(j.error)}`);
    return j.result;
  };
  const stop = async (): Promise<void> => {
    await stopChild(master);
    await gitHttp.close();
    rmSync(dir, { recursive: true, force: true });
  };
  try {
    await until(async () => {
      if (master.exitCode !== null) {
        // A port it could not bind is named first: the traceback that follows (stopService's) ends the log.
        const log = join(masterDir, 'twistd.log');
        const cannotListen = existsSync(log) ? /CannotListenError: (.*)/.exec(readFileSync(log, 'utf8'))?.[1] : undefined;
        throw new Error(`the BuildBot master exited (${master.exitCode})${cannotListen ? `: ${cannotListen}` : ''}: ${tail(log)}`);
      }
      return (await get<{ builders: unknown[] }>('builders').catch(() => null)) !== null;
    }, 60_000, 'the BuildBot master to start');
  } catch (e) {
    await stop();
    throw e;
  }
  const builderIds = new Map<string, number>();
  for (const b of (await get<{ builders: { name: string; builderid: number }[] }>('builders')).builders) builderIds.set(b.name, b.builderid);

  return {
    dir, webPort, uploadDir, masterPid: master.pid!, msgpackUrl: `ws://127.0.0.1:${msgpackPort}`, get, stop,
    force: async (builder) => {
      const id = builderIds.get(builder);
      if (id === undefined) throw new Error(`no builder ${builder}`);
      const [, brids] = await rpc('forceschedulers/force', 'force', { builderid: String(id), reason: 'test', username: 'Test <test@example.org>' }) as [number, Record<string, number>];
      return Object.values(brids)[0]!;
    },
    build: async (brid, opts = {}) => {
      let build: { buildid: number; results: number | null; state_string: string; complete: boolean } | undefined;
      await until(async () => {
        build = (await get<{ builds: typeof build[] }>(`builds?buildrequestid=${brid}`)).builds[0];
        return build !== undefined && (opts.running ? true : build.complete);
      }, opts.timeoutMs ?? 90_000, `build request ${brid}`);
      // A step's final summary (state_string) is written before its results, so a finished
      // step still saying "running" is almost always BuildBot 3.7 losing that write (see
      // lostSummary in compat.ts); read again for a few seconds in case it was only late.
      let read = await readBuild(get, build!.buildid);
      for (let i = 0; !opts.running && i < 12 && read.steps.some((st) => st.results !== null && st.state === 'running'); i++) {
        await sleep(250);
        read = await readBuild(get, build!.buildid);
      }
      return read;
    },
    stopBuild: async (buildid) => { await rpc(`builds/${buildid}`, 'stop', { reason: 'stopped by the test' }); },
    waitConnected: (name, timeoutMs = 60_000) => until(async () => {
      const ws = await get<{ workers: { name: string; connected_to: unknown[] }[] }>('workers');
      return ws.workers.some((w) => w.name === name && w.connected_to.length > 0);
    }, timeoutMs, `worker ${name} to connect`),
  };
}

async function readBuild(get: Lab['get'], buildid: number): Promise<BuildResult> {
  const b = (await get<{ builds: { results: number | null; state_string: string }[] }>(`builds/${buildid}`)).builds[0]!;
  const steps: StepResult[] = [];
  for (const s of (await get<{ steps: { stepid: number; name: string; results: number | null; state_string: string }[] }>(`builds/${buildid}/steps`)).steps) {
    const logs: Record<string, string> = {};
    for (const l of (await get<{ logs: { logid: number; name: string }[] }>(`steps/${s.stepid}/logs`)).logs) {
      const chunks = (await get<{ logchunks: { content: string }[] }>(`logs/${l.logid}/contents`)).logchunks;
      logs[l.name] = chunks.map((c) => c.content).join('');
    }
    steps.push({ name: s.name, results: s.results, state: s.state_string, logs });
  }
  return { buildid, results: b.results, state: b.state_string, steps };
}

/** The stock buildbot-worker 3.7 (msgpack_experimental_v7) for this lab, in the foreground. */
export async function startStockWorker(lab: Lab, name: string, basedir: string): Promise<{ pid: number; stop(): Promise<void> }> {
  execFileSync('buildbot-worker', ['create-worker', '-q', '-r', '--protocol=msgpack_experimental_v7', '--umask=0o22',
    basedir, lab.msgpackUrl.replace('ws://', ''), name, `pw-${name}`], { env: { ...process.env, ...PY_ENV }, stdio: 'pipe' });
  const child = spawn('buildbot-worker', ['start', '--nodaemon', basedir], { env: { ...process.env, ...PY_ENV }, stdio: 'ignore' });
  await lab.waitConnected(name);
  return { pid: child.pid!, stop: () => stopChild(child) };
}

export async function stopChild(child: ChildProcess): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return;
  const exited = new Promise((ok) => child.once('exit', ok));
  child.kill('SIGTERM');
  const t = setTimeout(() => child.kill('SIGKILL'), 10_000);
  await exited;
  clearTimeout(t);
}

export async function until(check: () => Promise<boolean>, timeoutMs: number, what: string): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    if (await check()) return;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await sleep(150);
  }
}

function tail(file: string): string {
  return existsSync(file) ? readFileSync(file, 'utf8').split('\n').slice(-20).join('\n') : '(no log)';
}

/** A stub `base` www plugin: Debian has no buildbot-www, and the REST API needs one to start. */
function writeStub(dir: string): void {
  mkdirSync(join(dir, 'cb_www_stub', 'static'), { recursive: true });
  mkdirSync(join(dir, 'cb_www_stub-0.1.dist-info'), { recursive: true });
  writeFileSync(join(dir, 'cb_www_stub', '__init__.py'), 'from buildbot.www.plugin import Application\nep = Application(__name__, "stub www (REST API only)")\n');
  writeFileSync(join(dir, 'cb_www_stub', 'VERSION'), '0.1\n');
  writeFileSync(join(dir, 'cb_www_stub', 'static', 'index.html'), '<!doctype html><title>stub</title>\n');
  writeFileSync(join(dir, 'cb_www_stub-0.1.dist-info', 'METADATA'), 'Metadata-Version: 2.1\nName: cb-www-stub\nVersion: 0.1\n');
  writeFileSync(join(dir, 'cb_www_stub-0.1.dist-info', 'entry_points.txt'), '[buildbot.www]\nbase = cb_www_stub:ep\n');
}

/**
 * A build's steps in comparable form: basedirs replaced by <BASE>, timings by N, the
 * environment block of the headers dropped (each worker has its own).
 */
export function normalise(build: BuildResult, basedirs: string[]): { name: string; results: number | null; state: string; logs: Record<string, string> }[] {
  return build.steps.map((s) => ({
    name: s.name, results: s.results, state: s.state.replace(/^worker \S+ ready$/, 'worker W ready'),
    logs: Object.fromEntries(Object.entries(s.logs).map(([k, v]) => [k, normaliseLog(v, basedirs)])),
  }));
}

export function normaliseLog(text: string, basedirs: string[]): string {
  let t = text;
  for (const b of basedirs) t = t.split(b).join('<BASE>');
  const out: string[] = [];
  let inEnv = false;
  for (const line of t.split('\n')) {
    if (line === 'h environment:') { inEnv = true; out.push(line); continue; }
    if (inEnv && line.startsWith('h  ')) continue;
    inEnv = false;
    // git's progress lines: their order and byte counts depend on timing.
    if (/^e(remote: (Total|Counting|Compressing|Enumerating)|Receiving objects|Resolving deltas)/.test(line)) continue;
    out.push(line.replace(/elapsedTime=[0-9.]+/, 'elapsedTime=N'));
  }
  return out.join('\n');
}
