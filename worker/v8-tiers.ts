import { setFlagsFromString } from 'node:v8';

/**
 * V8 settings for a `crowdbake worker` process, which idles on a volunteer's computer for hours
 * and is measured against the stock buildbot-worker there (bench/buildbot-worker.ts;
 * bench/README.md, "The idle worker's memory"). bin/crowdbake.js calls startIdleAgent() before
 * anything else is loaded. Every flag here is read where it applies (a resize, a tier-up
 * decision, the memory reducer arming its timer), not at V8's start, so setting them at run
 * time, before any code is hot, is safe:
 * - `--semi-space-growth-factor=1`: the young generation keeps its first 1 MiB semi-space (it
 *   otherwise grows to 8 MiB during start-up and keeps the pages; no cost to log throughput);
 * - `--max-opt=0`, the interpreter only, until the first build (compileForBuilds): an idle
 *   agent never pages in the compilers' code in the node binary nor keeps their output, 0.8 MiB;
 * - `--optimize-for-size`: V8's heap heuristics favour memory (smaller growth steps, earlier
 *   compaction), 1.5 MiB less at idle, the same CPU per log and per trivial build;
 * - `--gc-memory-reducer-start-delay-ms=2000`: V8's memory reducer (the compacting GCs that give
 *   start-up's garbage back once a process allocates little) runs 2 s, not 8 s, after the heap
 *   first grows. An agent is done starting within a second; before, it held about 3.5 MiB of
 *   start-up garbage for its first 8 s. It still runs only while the agent allocates little, so
 *   not in the middle of a loud build.
 */
export function startIdleAgent(): void {
  setFlagsFromString('--semi-space-growth-factor=1 --max-opt=0 --optimize-for-size --gc-memory-reducer-start-delay-ms=2000');
  state().interpreterOnly = true;
}

/**
 * A build starts (runner.ts's runBuild, for a master's build and a local rerun alike; the
 * BuildBot worker's first command): compile hot code from now on, for the rest of the process — Sparkplug, with
 * Maglev allowed (`--max-opt=2`, as before; TurboFan's code stays out of memory). `--max-opt=0`
 * had turned Sparkplug off too (a flag implication), so it is named again. Nothing happens in a
 * process that startIdleAgent() did not set up (tests, a master).
 */
export function compileForBuilds(): void {
  const s = state();
  if (!s.interpreterOnly) return;
  s.interpreterOnly = false;
  setFlagsFromString('--max-opt=2 --sparkplug');
}

/** Whether the agent still runs on the interpreter only. */
export function interpreterOnly(): boolean {
  return state().interpreterOnly;
}

// On globalThis: bin/crowdbake.js loads this module from dist/worker/, the bundled agent holds its own copy.
const KEY = Symbol.for('crowdbake.v8-tiers');
type State = { interpreterOnly: boolean };
function state(): State {
  return ((globalThis as Record<symbol, State | undefined>)[KEY] ??= { interpreterOnly: false });
}
