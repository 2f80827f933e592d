import type { BuildView } from '../../protocol/api.js';

/** Display helpers: sizes, times, durations, revisions, and a build's status word. */

export function formatBytes(n: number | null): string {
  if (n === null) return '—';
  const units = ['B', 'KiB', 'MiB', 'GiB', 'TiB'];
  let v = n;
  let i = 0;
  while (v >= 1024 && i < units.length - 1) { v /= 1024; i++; }
  return i === 0 ? `${n} B` : `${v < 10 ? v.toFixed(1) : Math.round(v)} ${units[i]}`;
}

export function formatDuration(ms: number): string {
  if (!Number.isFinite(ms) || ms < 0) return '—';
  const s = Math.round(ms / 1000);
  if (s < 60) return `${s}s`;
  const m = Math.floor(s / 60);
  if (m < 60) return `${m}m ${String(s % 60).padStart(2, '0')}s`;
  const h = Math.floor(m / 60);
  return `${h}h ${String(m % 60).padStart(2, '0')}m`;
}

// Made once: `toLocaleString(undefined, options)` builds a new formatter at every call, which
// was the largest single cost of the dashboard's first render (about 100 ms for a page of builds).
let timeOfDay: Intl.DateTimeFormat | undefined;
let dayAndTime: Intl.DateTimeFormat | undefined;

/** "14:03:12" today, "3 May 14:03" otherwise. */
export function formatTime(iso: string | null, now = Date.now()): string {
  if (!iso) return '—';
  const d = new Date(iso);
  if (Number.isNaN(d.getTime())) return iso;
  const n = new Date(now);
  const sameDay = n.getFullYear() === d.getFullYear() && n.getMonth() === d.getMonth() && n.getDate() === d.getDate();
  return sameDay
    ? (timeOfDay ??= new Intl.DateTimeFormat(undefined, { hour: '2-digit', minute: '2-digit', second: '2-digit' })).format(d)
    : (dayAndTime ??= new Intl.DateTimeFormat(undefined, { day: 'numeric', month: 'short', hour: '2-digit', minute: '2-digit' })).format(d);
}

export function formatRelative(iso: string | null, now = Date.now()): string {
  if (!iso) return '—';
  const ms = now - new Date(iso).getTime();
  if (!Number.isFinite(ms)) return iso;
  if (ms < 45_000) return 'just now';
  if (ms < 3_600_000) return `${Math.round(ms / 60_000)} min ago`;
  if (ms < 86_400_000) return `${Math.round(ms / 3_600_000)} h ago`;
  return `${Math.round(ms / 86_400_000)} d ago`;
}

export function shortRevision(rev: string | null): string {
  if (!rev) return '—';
  return /^[0-9a-f]{40,64}$/i.test(rev) ? rev.slice(0, 10) : rev;
}

/** How long a build ran (or has been running). */
export function buildDuration(b: BuildView, now = Date.now()): string {
  if (!b.startedAt) return '—';
  const end = b.finishedAt ? new Date(b.finishedAt).getTime() : now;
  return formatDuration(end - new Date(b.startedAt).getTime());
}

export type BuildStatus = 'queued' | 'running' | 'frozen' | 'success' | 'failure' | 'error' | 'cancelled' | 'superseded';

/** One word for a build's colour and label: its result once finished, its state before. */
export function buildStatus(b: Pick<BuildView, 'state' | 'result'>): BuildStatus {
  if (b.state === 'finished') return b.result ?? 'error';
  return b.state;
}

export const STATUS_LABEL: Record<BuildStatus, string> = {
  queued: 'Queued', running: 'Running', frozen: 'Frozen', success: 'Success', failure: 'Failure', error: 'Error', cancelled: 'Cancelled',
  superseded: 'Superseded',
};

/** Milliseconds as hours (credit: CPU and wall time). */
export const msToHours = (ms: number): number => ms / 3_600_000;

/** Hours as text: two decimals, or two significant digits when that would read 0.00. */
export const formatHours = (h: number): string => (h > 0 && h < 0.005 ? h.toPrecision(2) : h.toFixed(2));
