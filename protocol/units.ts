/**
 * Durations ("500ms", "30s", "5m", "2h", "1d") and sizes ("512m", "4g", "100k", "1024").
 * Pure functions: protocol/ does no I/O.
 */

const DURATION_UNITS: Record<string, number> = { ms: 1, s: 1000, m: 60_000, h: 3_600_000, d: 86_400_000 };
const SIZE_UNITS: Record<string, number> = {
  '': 1, b: 1, k: 1024, kb: 1024, kib: 1024, m: 1024 ** 2, mb: 1024 ** 2, mib: 1024 ** 2,
  g: 1024 ** 3, gb: 1024 ** 3, gib: 1024 ** 3, t: 1024 ** 4, tb: 1024 ** 4, tib: 1024 ** 4,
};

/** Parses a duration into milliseconds; returns an error string when it is not one. */
export function parseDuration(input: string | number): number | string {
  if (typeof input === 'number') {
    return Number.isFinite(input) && input >= 0 ? input * 1000 : `"${input}" is not a duration`;
  }
  const m = /^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h|d)\s*$/i.exec(input);
  if (!m) return `"${input}" is not a duration (use e.g. 500ms, 30s, 5m, 2h)`;
  return Math.round(Number(m[1]) * DURATION_UNITS[m[2]!.toLowerCase()]!);
}

/** Parses a size into bytes; returns an error string when it is not one. */
export function parseSize(input: string | number): number | string {
  if (typeof input === 'number') {
    return Number.isFinite(input) && input >= 0 ? Math.round(input) : `"${input}" is not a size`;
  }
  const m = /^\s*(\d+(?:\.\d+)?)\s*([a-z]*)\s*$/i.exec(input);
  const unit = m ? SIZE_UNITS[m[2]!.toLowerCase()] : undefined;
  if (!m || unit === undefined) return `"${input}" is not a size (use e.g. 512m, 4g)`;
  return Math.round(Number(m[1]) * unit);
}

export function formatDuration(ms: number): string {
  if (!Number.isFinite(ms)) return 'forever';
  if (ms < 1000) return `${Math.round(ms)}ms`;
  if (ms < 10_000) return `${(ms / 1000).toFixed(1)}s`;
  const s = Math.round(ms / 1000);
  if (s < 60) return `${s}s`;
  if (s < 3600) return `${Math.floor(s / 60)}m${s % 60}s`;
  const m = Math.round(s / 60);
  return `${Math.floor(m / 60)}h${m % 60}m`;
}

export function formatSize(bytes: number): string {
  const units = ['B', 'KiB', 'MiB', 'GiB', 'TiB'];
  let v = bytes;
  let i = 0;
  while (v >= 1024 && i < units.length - 1) { v /= 1024; i++; }
  return `${i === 0 ? v : v.toFixed(1)} ${units[i]}`;
}
