import uPlot from 'uplot';
import type { CapacityBucketView, CreditDayView } from '../../../../protocol/api.js';
import { formatHours, msToHours as hours } from '../../format';
import type { ChartOptions } from './uplot-chart';

/**
 * What the Contributors page's charts draw, as uPlot options and aligned data. Days are UTC
 * dates (the master counts credit per UTC day), so the time axis is drawn in UTC too.
 */

export const COLORS = { builds: '#2456c7', cpu: '#1e7b3a', wall: '#a86400', capacity: '#2456c7', peak: '#7542a8' } as const;
export const DAY_NAMES = ['Sun', 'Mon', 'Tue', 'Wed', 'Thu', 'Fri', 'Sat'] as const;

const utc = (ts: number) => uPlot.tzDate(new Date(ts * 1000), 'Etc/UTC');
// Bars are filled, never stroked: a day with nothing draws no mark at all.
const bars = uPlot.paths.bars!({ size: [0.7, 24], gap: 1 });
const hourBars = uPlot.paths.bars!({ size: [1, 12], gap: 0 });
/** Half a day either side, so the first and the last day's bars are whole. */
const dayRange: uPlot.Scale.Range = (_u, min, max) => [min - 43_200, max + 43_200];
// Short builds give small numbers of hours: two significant digits below 0.1.
const hourTicks = (_u: uPlot, ticks: number[]) => ticks.map((t) => (t === 0 ? '0' : t < 0.1 ? t.toPrecision(2) : t < 10 ? t.toFixed(1) : String(Math.round(t))));
const axis = (extra: Partial<uPlot.Axis> = {}): uPlot.Axis => ({ stroke: '#5b6573', grid: { stroke: '#eceef1', width: 1 }, ticks: { stroke: '#dcdfe4', width: 1 }, ...extra });

/** Seconds since the epoch of a `YYYY-MM-DD` (UTC midnight). */
export const dayToSeconds = (day: string): number => Date.parse(`${day}T00:00:00Z`) / 1000;


/** Builds per day. */
export function buildsPerDay(days: readonly CreditDayView[]): uPlot.AlignedData {
  return [days.map((d) => dayToSeconds(d.day)), days.map((d) => d.builds)];
}

/** CPU hours (bars) and wall hours (a line) per day. */
export function hoursPerDay(days: readonly CreditDayView[]): uPlot.AlignedData {
  return [days.map((d) => dayToSeconds(d.day)), days.map((d) => hours(d.cpuMs)), days.map((d) => hours(d.wallMs))];
}

/** Average and most workers accepting, hour by hour of the week (0 = Sunday 00:00 UTC). */
export function capacityByHour(buckets: readonly CapacityBucketView[]): uPlot.AlignedData {
  const sorted = [...buckets].sort((a, b) => a.hourOfWeek - b.hourOfWeek);
  return [sorted.map((b) => b.hourOfWeek), sorted.map((b) => (b.samples ? b.average : null)), sorted.map((b) => (b.samples ? b.max : null))];
}

const base = (): Pick<ChartOptions, 'legend' | 'cursor'> => ({ legend: { show: true, live: true }, cursor: { drag: { x: false, y: false } } });

export const BUILDS_OPTIONS: ChartOptions = {
  ...base(),
  tzDate: utc,
  scales: { x: { time: true, range: dayRange }, y: { range: (_u, _min, max) => [0, Math.max(1, max)] } },
  axes: [axis(), axis({ label: 'builds', size: 50 })],
  series: [{ label: 'Day' }, { label: 'Builds', stroke: COLORS.builds, width: 0, fill: `${COLORS.builds}cc`, paths: bars, points: { show: false }, value: (_u, v) => String(v ?? 0) }],
};

export const HOURS_OPTIONS: ChartOptions = {
  ...base(),
  tzDate: utc,
  scales: { x: { time: true, range: dayRange }, y: { range: (_u, _min, max) => [0, max > 0 ? max * 1.1 : 0.1] } },
  axes: [axis(), axis({ label: 'hours', size: 72, values: hourTicks })],
  series: [
    { label: 'Day' },
    { label: 'CPU hours', stroke: COLORS.cpu, width: 0, fill: `${COLORS.cpu}cc`, paths: bars, points: { show: false }, value: (_u, v) => formatHours(v ?? 0) },
    { label: 'Wall hours', stroke: COLORS.wall, width: 2, points: { show: false }, value: (_u, v) => (v === null ? '—' : formatHours(v)) },
  ],
};

const hourLabel = (h: number) => `${DAY_NAMES[Math.floor(h / 24) % 7]} ${String(h % 24).padStart(2, '0')}:00`;

export const CAPACITY_OPTIONS: ChartOptions = {
  ...base(),
  scales: { x: { time: false, range: [0, 167] }, y: { range: (_u, _min, max) => [0, Math.max(1, Math.ceil(max))] } },
  axes: [
    axis({ splits: () => [0, 24, 48, 72, 96, 120, 144], values: (_u, ticks) => ticks.map((t) => DAY_NAMES[Math.floor(t / 24)] ?? '') }),
    axis({ label: 'workers', size: 50 }),
  ],
  series: [
    { label: 'Hour (UTC)', value: (_u, v) => (v === null ? '—' : hourLabel(v)) },
    // Bars: an hour is a bucket, and one sampled hour (a new farm) is already visible.
    { label: 'Accepting, on average', stroke: COLORS.capacity, fill: `${COLORS.capacity}99`, paths: hourBars, points: { show: false }, value: (_u, v) => (v === null ? '—' : v.toFixed(1)) },
    { label: 'Most at once', stroke: COLORS.peak, width: 0, paths: () => null, points: { show: true, size: 5, fill: COLORS.peak }, value: (_u, v) => (v === null ? '—' : String(v)) },
  ],
};
