import type { Preferences } from '../protocol/control-api.js';

/** The part of the preferences store these switches need. */
interface Prefs {
  get(): Preferences;
  update(change: Partial<Preferences>): Preferences;
}

/**
 * "Start paused after a restart": applied once when the agent starts. A "finish the current
 * build, then pause" that was pending when the agent stopped becomes a pause now: the build it
 * waited for is gone with the old process (its master requeues it). Both flags live in
 * DATA/preferences.json, so they survive the restart that reads them. Returns what it did, for the log.
 */
export function applyStartSwitches(prefs: Prefs): string | null {
  const p = prefs.get();
  if (p.pauseAfterCurrent) {
    prefs.update({ paused: true, pauseAfterCurrent: false });
    return 'paused: "finish the current build, then pause" was pending when the agent stopped';
  }
  if (p.startPaused && !p.paused) {
    prefs.update({ paused: true });
    return 'paused: this computer is set to start paused (resume to build)';
  }
  return null;
}

/** After a build ends: with "finish the current build, then pause" set and nothing left running, pause. True when it paused. */
export function pauseIfFinished(prefs: Prefs, stillRunning: number): boolean {
  if (!prefs.get().pauseAfterCurrent || stillRunning > 0) return false;
  prefs.update({ paused: true, pauseAfterCurrent: false });
  return true;
}
