/** Waiting on conditions in tests, never on fixed times: a condition polled under a generous bound. */

/** Waits until `check` returns a truthy value (polling every 20 ms), or fails after the timeout. */
export async function until<T>(what: string, check: () => T | Promise<T>, timeoutMs = 20_000): Promise<NonNullable<T>> {
  const end = Date.now() + timeoutMs;
  for (;;) {
    const v = await check();
    if (v) return v as NonNullable<T>;
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

/**
 * Waits until `count` reads the same twice, `gapMs` apart — what was already in flight (output
 * in a pipe, a socket or a log write when a build froze) has landed — calling `meanwhile` before
 * each gap (e.g. to keep a desk in use). Returns that count.
 */
export async function whenSteady(what: string, count: () => Promise<number>, meanwhile: () => unknown = () => undefined, gapMs = 500, timeoutMs = 20_000): Promise<number> {
  const end = Date.now() + timeoutMs;
  let last = await count();
  for (;;) {
    await meanwhile();
    await new Promise((r) => setTimeout(r, gapMs));
    const now = await count();
    if (now === last) return now;
    if (Date.now() > end) throw new Error(`timed out waiting for ${what} to settle (still moving: ${last} -> ${now})`);
    last = now;
  }
}
