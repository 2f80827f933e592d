import type { WorkerView } from '../protocol/api.js';
import type { Capabilities } from '../protocol/worker-messages.js';
import type { WorkerSession } from './coordinator.js';

/** The REST view of a worker: live state from its session, the rest from what it last reported. */
export function workerView(name: string, caps: Capabilities | null, session: WorkerSession | null, lastSeenAt: string | null = null): WorkerView {
  const builds = session ? [...session.builds] : [];
  const state = !session ? 'offline' : session.draining ? 'draining' : session.frozen.size > 0 ? 'frozen' : builds.length > 0 ? 'busy' : 'idle';
  return {
    name,
    connected: session !== null,
    state,
    labels: session ? [...session.labels] : caps?.labels ?? [],
    executors: caps?.executors ?? [],
    cpus: caps?.cpus ?? null,
    memory: caps?.memoryBytes ?? null,
    os: caps?.os ?? null,
    arch: caps?.arch ?? null,
    builds,
    accepting: session?.accepting ?? false,
    reason: session ? session.reason : 'not connected',
    lastSeenAt: session ? new Date().toISOString() : lastSeenAt,
  };
}
