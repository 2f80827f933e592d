import { accessSync, constants, statfsSync } from 'node:fs';
import { availableParallelism, totalmem } from 'node:os';
import type { ExecutorKind } from '../protocol/build-spec.js';
import type { Capabilities } from '../protocol/worker-messages.js';
import { osName } from './system-info.js';

export interface VolunteerCaps {
  cpus?: number;
  memoryBytes?: number;
  diskBytes?: number;
  labels: string[];
  maxBuilds: number;
}

/** What this machine offers, within the limits the volunteer chose. */
export async function readCapabilities(dataDir: string, executors: ExecutorKind[], caps: VolunteerCaps): Promise<Capabilities> {
  const os = await osName();
  const cpus = Math.max(1, Math.min(caps.cpus ?? Infinity, availableParallelism()));
  const memory = Math.min(caps.memoryBytes ?? Infinity, totalmem());
  let disk = 0;
  try {
    const s = statfsSync(dataDir);
    disk = s.bavail * s.bsize;
  } catch { /* unknown */ }
  return {
    os: os.slice(0, 200),
    platform: process.platform,
    arch: process.arch,
    cpus: Math.floor(cpus),
    memoryBytes: Math.floor(memory),
    diskBytes: Math.floor(Math.min(caps.diskBytes ?? Infinity, disk)),
    executors,
    labels: caps.labels,
    maxBuilds: caps.maxBuilds,
    virtualization: kvmUsable(),
  };
}

function kvmUsable(): boolean {
  try {
    accessSync('/dev/kvm', constants.R_OK | constants.W_OK);
    return true;
  } catch {
    return false;
  }
}
