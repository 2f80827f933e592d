import { useEffect, useRef } from 'react';
import uPlot from 'uplot';
import type { GaveDay } from './gave-model';

const COLORS = ['#2f86d1', '#c9501c', '#3a9b5c', '#8a5cc7', '#c79a1c', '#1c9bc7'];

/** Bars per day, one series per project (uPlot on a canvas; the table beside it has the same numbers). */
export function GaveChart({ days, projects, what, label }: { days: GaveDay[]; projects: string[]; what: 'builds' | 'hours' | 'cpuHours'; label: string }) {
  const box = useRef<HTMLDivElement>(null);
  useEffect(() => {
    const el = box.current;
    if (!el || projects.length === 0) return;
    const xs = days.map((d) => d.day / 1000);
    const data: uPlot.AlignedData = [xs, ...projects.map((p) => days.map((d) => d[what][p] ?? 0))];
    const bars = uPlot.paths.bars!({ size: [0.8 / projects.length, 40], align: 0 });
    const plot = new uPlot({
      width: Math.max(320, el.clientWidth || 640), height: 220, title: label,
      scales: { x: { time: true, range: (_u, min, max) => [min - 43_200, max + 43_200] }, y: { range: (_u, _min, max) => [0, Math.max(what === 'builds' ? 1 : 0.1, max) * 1.1] } },
      axes: [{}, { label: what === 'builds' ? 'builds' : 'hours', size: 60 }],
      series: [{}, ...projects.map((p, i) => ({ label: p, stroke: COLORS[i % COLORS.length]!, fill: `${COLORS[i % COLORS.length]!}cc`, paths: bars, points: { show: false } }))],
      legend: { show: true },
    }, data, el);
    return () => plot.destroy();
  }, [days, projects, what, label]);
  return <div ref={box} className="gave-chart" role="img" aria-label={`${label}: a bar chart per day and project; the table below has the numbers`} />;
}
