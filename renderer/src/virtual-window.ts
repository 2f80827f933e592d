/**
 * Which rows of a long fixed-height list to render: those in view plus `overscan` either side.
 * Rows above `start` and from `end` on are stood in for by two spacers of the given heights.
 */
export interface VirtualWindow {
  start: number;
  end: number;
  before: number;
  after: number;
}

export function virtualWindow(scrollTop: number, viewport: number, rowHeight: number, count: number, overscan = 10): VirtualWindow {
  const first = Math.max(0, Math.floor(scrollTop / rowHeight) - overscan);
  const start = Math.min(first, count);
  const end = Math.min(count, Math.ceil((scrollTop + viewport) / rowHeight) + overscan);
  return { start, end: Math.max(start, end), before: start * rowHeight, after: (count - Math.max(start, end)) * rowHeight };
}

/** Every row of a builds table is this tall (styles.css pins `.builds-table tbody tr`), so the list can be virtual. */
export const ROW_HEIGHT = 38;
/** Builds tables longer than this render only the rows in view. */
export const VIRTUAL_FROM = 60;
