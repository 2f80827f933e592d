import { imageExists } from '../podman.js';
import { withFileLock } from './file-lock.js';

/**
 * Builds an image tag at most once at a time on this machine: callers in this process asking
 * for the same tag share one build (and all see its output), and processes sharing `lockDir`
 * take turns through a lock file, each checking again whether the tag exists once it has the
 * lock. Settled builds are forgotten: the next caller checks the tag again.
 */

export type Progress = (line: string) => void;
/** 'built' by this call; 'reused' because it existed; 'shared' with a build already running in this process. */
export type BuildOutcome = 'built' | 'reused' | 'shared';

interface InFlight {
  done: Promise<'built' | 'reused'>;
  listeners: Set<Progress>;
}

const inFlight = new Map<string, InFlight>();

export interface SharedBuildOptions {
  tag: string;
  lockDir: string;
  /** Said to the caller when another build (in this process or another) already makes the tag. */
  what: string;
  progress: Progress;
  /** Makes the image and tags it `tag`. Lines it reports reach every caller waiting for it. */
  build: (progress: Progress) => Promise<void>;
}

export async function sharedBuild(o: SharedBuildOptions): Promise<BuildOutcome> {
  const running = inFlight.get(o.tag);
  if (running) {
    o.progress(`${o.what}: already being built for another build on this worker; waiting for it`);
    running.listeners.add(o.progress);
    try {
      await running.done;
    } finally {
      running.listeners.delete(o.progress);
    }
    return 'shared';
  }
  const listeners = new Set<Progress>([o.progress]);
  const fan: Progress = (line) => { for (const l of listeners) l(line); };
  const done = (async (): Promise<'built' | 'reused'> => {
    if (await imageExists(o.tag)) return 'reused';
    const lockName = o.tag.replace(/[^A-Za-z0-9._-]/g, '_');
    return withFileLock(o.lockDir, lockName, async () => {
      if (await imageExists(o.tag)) return 'reused';
      await o.build(fan);
      return 'built';
    }, {
      onWait: (pid) => fan(`${o.what}: another process on this machine${pid ? ` (pid ${pid})` : ''} is building it; waiting`),
    });
  })();
  const entry = { done, listeners };
  inFlight.set(o.tag, entry);
  try {
    return await done;
  } finally {
    if (inFlight.get(o.tag) === entry) inFlight.delete(o.tag);
  }
}
