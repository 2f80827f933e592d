import type { BuildSpec } from '../protocol/build-spec.js';
import { allStepNames } from '../protocol/build-spec.js';
import { formatSize } from '../protocol/units.js';
import type { WorkerMessage } from '../protocol/worker-messages.js';
import type { LogBytesMessage } from '../protocol/log-frame.js';

/**
 * What one build may put on the master, whatever its worker says: the per-build caps of the
 * master's `crowdbake.yml` (`limits:`), and the time a build may hold a worker slot.
 */
export interface BuildCaps {
  /** Log bytes per attempt (`limits.logSize`). */
  logBytes: number;
  /** Artifacts per attempt (`limits.artifactCount`). */
  artifactCount: number;
  /** Artifact bytes per attempt, all artifacts together (`limits.artifactsSize`). */
  artifactBytes: number;
  /** An artifact upload with no chunk for this long is dropped and its `.partial` removed (`limits.uploadStall`). */
  uploadStallMs: number;
  /** The master-side time limit of a build whose builder sets no `limits.time` (`limits.defaultTime`). */
  defaultTimeMs: number;
  /** Added to the builder's (or the default) time limit before the master gives up on a worker (`limits.timeGrace`). */
  timeGraceMs: number;
  /** Frozen time (as the worker reports it) a build may spend in all, uncounted by the deadline (`limits.frozenTime`). */
  frozenTimeMs: number;
}

export const DEFAULT_BUILD_CAPS: BuildCaps = {
  logBytes: 256 * 1024 ** 2,
  artifactCount: 100,
  artifactBytes: 4 * 1024 ** 3,
  uploadStallMs: 120_000,
  defaultTimeMs: 6 * 3600_000,
  timeGraceMs: 15 * 60_000,
  frozenTimeMs: 24 * 3600_000,
};

/**
 * A message the worker had no business sending for this build (the spec does not allow it).
 * The worker is told which field, the build is requeued on another worker and this one flagged.
 */
export interface Violation {
  kind: 'violation';
  field: string;
  message: string;
}

/** The build went over one of the master's caps: it ends with an error naming the cap (not the worker's fault). */
export interface CapExceeded {
  kind: 'cap';
  message: string;
}

/** A late chunk of an upload the master dropped (it stalled): discarded without a word. */
export interface Ignore {
  kind: 'ignore';
}

/** What one attempt of a build has put on the master so far. */
export class BuildUsage {
  logBytes = 0;
  artifactBytes = 0;
  /** Artifact names started (completed or in flight), in this attempt. */
  readonly artifacts = new Set<string>();
  /** The artifact whose upload is in flight, or null. */
  uploading: string | null = null;
  /** Uploads the master dropped because they stalled: their late chunks are ignored. */
  private readonly dropped = new Set<string>();
  readonly stepCount: number;
  private readonly namePatterns: RegExp[];

  constructor(readonly spec: Pick<BuildSpec, 'steps' | 'testInstall' | 'artifacts'>, private readonly caps: BuildCaps) {
    this.stepCount = allStepNames(spec).length;
    this.namePatterns = spec.artifacts.map(baseNamePattern);
  }

  /**
   * Checks one worker message against the build's spec and the caps, and counts it. Runs on
   * the master before the message touches a file, a row or an array: nothing a worker sends
   * is sized by the worker alone.
   */
  check(msg: Exclude<WorkerMessage, { type: 'hello' | 'availability' }> | LogBytesMessage): Violation | CapExceeded | Ignore | null {
    switch (msg.type) {
      case 'step':
        if (msg.index >= this.stepCount) {
          return violation('step.index', `${msg.index} is not a step of this build (it has ${this.stepCount}, numbered from 0)`);
        }
        return null;
      case 'log': {
        this.logBytes += typeof msg.data === 'string' ? Buffer.byteLength(msg.data) : msg.data.length;
        if (this.logBytes > this.caps.logBytes) {
          return { kind: 'cap', message: `the build's log exceeds the master's limit of ${formatSize(this.caps.logBytes)} (limits.logSize in crowdbake.yml); the build was stopped` };
        }
        return null;
      }
      case 'artifact':
        return this.checkArtifact(msg);
      default:
        return null;
    }
  }

  private checkArtifact(msg: Extract<WorkerMessage, { type: 'artifact' }>): Violation | CapExceeded | Ignore | null {
    if (this.dropped.has(msg.name)) return { kind: 'ignore' };
    if (this.uploading === msg.name) {
      if (msg.last) this.uploading = null;
      return null;
    }
    // A new upload: it must start at 0, after the previous one ended, under a name and size the spec and caps allow.
    if (this.uploading !== null) {
      return violation('artifact.name', `"${msg.name}" started while the upload of "${this.uploading}" is still open; one artifact upload at a time per build`);
    }
    if (this.artifacts.has(msg.name)) return violation('artifact.name', `"${msg.name}" was already uploaded in this attempt`);
    if (this.namePatterns.length === 0) return violation('artifact.name', `"${msg.name}": this build's spec names no artifacts`);
    if (!this.namePatterns.some((re) => re.test(msg.name))) {
      return violation('artifact.name', `"${msg.name}" matches none of the build's artifact patterns (${this.spec.artifacts.join(', ')})`);
    }
    if (msg.offset !== 0) return violation('artifact.offset', `the first chunk of "${msg.name}" is at offset ${msg.offset}, expected 0`);
    if (this.artifacts.size + 1 > this.caps.artifactCount) {
      return { kind: 'cap', message: `the build has more than ${this.caps.artifactCount} artifacts, the master's limit (limits.artifactCount in crowdbake.yml); the build was stopped` };
    }
    if (this.artifactBytes + msg.size > this.caps.artifactBytes) {
      return { kind: 'cap', message: `the build's artifacts exceed the master's limit of ${formatSize(this.caps.artifactBytes)} in all (limits.artifactsSize in crowdbake.yml; "${msg.name}" is ${formatSize(msg.size)}); the build was stopped` };
    }
    this.artifacts.add(msg.name);
    this.artifactBytes += msg.size;
    if (!msg.last) this.uploading = msg.name;
    return null;
  }

  /** The artifact store refused the upload of `name` (said in the log); it is over. */
  uploadEnded(name: string): void {
    if (this.uploading === name) this.uploading = null;
  }

  /** The master dropped the upload of `name`: no chunk came for `limits.uploadStall`. */
  uploadStalled(name: string): void {
    this.uploadEnded(name);
    this.dropped.add(name);
  }
}

function violation(field: string, message: string): Violation {
  return { kind: 'violation', field, message };
}

/**
 * The file names an artifact pattern can produce: the worker uploads each matching file under
 * its base name, so the pattern's last path segment (a `**` in it matches anything) bounds them.
 */
export function baseNamePattern(pattern: string): RegExp {
  const last = pattern.slice(pattern.lastIndexOf('/') + 1);
  if (last === '') return /^$/;
  let re = '';
  for (let i = 0; i < last.length; i++) {
    const c = last[i]!;
    if (c === '*' && last[i + 1] === '*') { re += '.*'; i++; }
    else if (c === '*') re += '.*';
    else if (c === '?') re += '.';
    else re += c.replace(/[.+^${}()|[\]\\]/g, '\\$&');
  }
  return new RegExp(`^${re}$`, 's');
}
