import { mkdirSync, rmSync } from 'node:fs';
import { join, resolve } from 'node:path';
import type { ExecutorKind, Limits } from '../protocol/build-spec.js';
import type { MasterMessage } from '../protocol/worker-messages.js';
import { assertNever } from '../protocol/assert-never.js';
import { readCapabilities } from './capabilities.js';
import { detectExecutors } from './executors/detect.js';
import type { Executor } from './executors/executor.js';
import { MasterLink, workerEndpoint } from './master-link.js';
import { runBuild } from './runner.js';

export interface WorkerOptions {
  master: string;
  token: string;
  /** Defaults to the name inside the token. */
  name?: string;
  dataDir: string;
  executor: 'auto' | ExecutorKind;
  cpus?: number;
  memoryBytes?: number;
  diskBytes?: number;
  labels: string[];
  maxBuilds?: number;
  agentVersion?: string;
  backoff?: { minMs: number; maxMs: number };
  log?: (line: string) => void;
}

export interface WorkerHandle {
  name: string;
  executors: ExecutorKind[];
  link: MasterLink;
  /** Build ids running now. */
  running(): number[];
  /** Resolves when the worker stops for good (closed, or refused by the master). */
  done: Promise<void>;
  close(): Promise<void>;
}

interface Running {
  attempt: number;
  controller: AbortController;
  done: Promise<unknown>;
}

/** Starts the volunteer agent: picks executors, cleans up leftovers, connects and runs what it is assigned. */
export async function startWorker(opts: WorkerOptions): Promise<WorkerHandle> {
  const log = opts.log ?? ((l: string) => console.log(`crowdbake worker: ${l}`));
  const tokenName = /^cbw1\.([^.]+)\./.exec(opts.token)?.[1];
  const name = opts.name ?? tokenName;
  if (!name) throw new Error('--token does not look like a worker token (cbw1.NAME.SECRET); pass the token `crowdbake token create` printed');
  const dataDir = resolve(opts.dataDir);
  const workRoot = join(dataDir, 'work');
  // Workdirs left by an earlier run that crashed belong to builds the master has requeued.
  rmSync(workRoot, { recursive: true, force: true });
  mkdirSync(workRoot, { recursive: true });
  const url = workerEndpoint(opts.master);

  const detected = await detectExecutors(`w-${name}`.toLowerCase().replace(/[^a-z0-9-]/g, '-'), opts.executor);
  for (const [kind, why] of Object.entries(detected.unavailable)) log(`executor ${kind} unavailable: ${why}`);
  if (detected.executors.length === 0) {
    throw new Error(`no executor available (${Object.entries(detected.unavailable).map(([k, v]) => `${k}: ${v}`).join('; ')})`);
  }
  const executors = new Map<ExecutorKind, Executor>(detected.executors.map((e) => [e.kind, e]));
  for (const e of executors.values()) {
    const n = await e.cleanupStale();
    if (n > 0) log(`removed ${n} leftover ${e.kind} sandbox(es) from an earlier run`);
  }

  const volunteerLimits: Limits = {
    ...(opts.cpus !== undefined ? { cpus: opts.cpus } : {}),
    ...(opts.memoryBytes !== undefined ? { memoryBytes: opts.memoryBytes } : {}),
    ...(opts.diskBytes !== undefined ? { diskBytes: opts.diskBytes } : {}),
  };
  const running = new Map<number, Running>();
  const link = new MasterLink({
    url, name, token: opts.token, agentVersion: opts.agentVersion ?? '0.1.0',
    ...(opts.backoff ? { backoff: opts.backoff } : {}),
    capabilities: () => readCapabilities(dataDir, [...executors.keys()], {
      ...(opts.cpus !== undefined ? { cpus: opts.cpus } : {}),
      ...(opts.memoryBytes !== undefined ? { memoryBytes: opts.memoryBytes } : {}),
      ...(opts.diskBytes !== undefined ? { diskBytes: opts.diskBytes } : {}),
      labels: opts.labels, maxBuilds: opts.maxBuilds ?? 1,
    }),
  });

  const onMessage = (msg: MasterMessage) => {
    switch (msg.type) {
      case 'assign': {
        const executor = executors.get(msg.spec.executor === 'any' ? 'container' : msg.spec.executor);
        if (!executor || running.has(msg.buildId)) {
          void link.send({ type: 'state', buildId: msg.buildId, attempt: msg.attempt, state: 'finished', result: 'error',
            message: executor ? 'build already running here' : `this worker has no ${msg.spec.executor} executor` }).catch(() => undefined);
          return;
        }
        const controller = new AbortController();
        log(`build ${msg.buildId} (${msg.spec.builder}) attempt ${msg.attempt} started`);
        const done = runBuild({
          buildId: msg.buildId, attempt: msg.attempt, spec: msg.spec, executor, workRoot, volunteerLimits,
          send: (m) => link.send(m), signal: controller.signal,
        }).then((result) => log(`build ${msg.buildId} ${result}`))
          .catch((e: Error) => log(`build ${msg.buildId} failed: ${e.message}`))
          .finally(() => running.delete(msg.buildId));
        running.set(msg.buildId, { attempt: msg.attempt, controller, done });
        return;
      }
      case 'cancel': {
        const r = running.get(msg.buildId);
        if (r && r.attempt === msg.attempt) {
          log(`build ${msg.buildId} cancelled: ${msg.reason}`);
          r.controller.abort();
        }
        return;
      }
      case 'welcome':
      case 'error':
        return;
      default:
        assertNever(msg, 'master message');
    }
  };

  let finish!: () => void;
  const done = new Promise<void>((ok) => { finish = ok; });
  link.on('message', onMessage);
  link.on('connected', () => log(`connected to ${url} as ${name} (executors: ${[...executors.keys()].join(', ')})`));
  link.on('warning', (w: string) => log(w));
  link.on('disconnected', (why: string) => {
    log(`disconnected: ${why}`);
    // The master requeues our builds when we vanish; stop them so nothing runs twice.
    for (const r of running.values()) r.controller.abort();
  });
  link.on('fatal', (e: Error) => {
    log(`stopping: ${e.message}`);
    for (const r of running.values()) r.controller.abort();
    finish();
  });
  link.start();

  return {
    name,
    executors: [...executors.keys()],
    link,
    running: () => [...running.keys()],
    done,
    close: async () => {
      link.close();
      for (const r of running.values()) r.controller.abort();
      await Promise.all([...running.values()].map((r) => r.done));
      finish();
    },
  };
}
