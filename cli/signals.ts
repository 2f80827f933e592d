/** Resolves on the first SIGINT or SIGTERM. */
export function untilSignal(): Promise<NodeJS.Signals> {
  return new Promise((ok) => {
    const on = (s: NodeJS.Signals) => {
      process.off('SIGINT', on);
      process.off('SIGTERM', on);
      ok(s);
    };
    process.on('SIGINT', on);
    process.on('SIGTERM', on);
  });
}

/**
 * Calls `on` for every SIGINT and SIGTERM, with how many have come so far (1 for the first);
 * the returned function removes the handlers.
 */
export function onSignals(on: (signal: NodeJS.Signals, count: number) => void): () => void {
  let count = 0;
  const handler = (s: NodeJS.Signals) => on(s, ++count);
  process.on('SIGINT', handler);
  process.on('SIGTERM', handler);
  return () => { process.off('SIGINT', handler); process.off('SIGTERM', handler); };
}
