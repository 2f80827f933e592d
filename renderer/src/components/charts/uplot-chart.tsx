import { useEffect, useRef } from 'react';
import uPlot from 'uplot';

export type ChartOptions = Omit<uPlot.Options, 'width' | 'height'>;

/**
 * One uPlot chart (canvas), as wide as its container and redrawn when that changes. A new
 * `options` object makes a new chart; new `data` only redraws it. The chart is decoration
 * for sighted readers: the numbers are also given as text beside it (see ChartFigure).
 */
export function UplotChart({ options, data, height }: { options: ChartOptions; data: uPlot.AlignedData; height: number }) {
  const box = useRef<HTMLDivElement>(null);
  const chart = useRef<uPlot | null>(null);

  useEffect(() => {
    const el = box.current;
    if (!el) return;
    const plot = new uPlot({ ...options, width: Math.max(200, el.clientWidth), height }, data, el);
    chart.current = plot;
    const resize = new ResizeObserver(() => plot.setSize({ width: Math.max(200, el.clientWidth), height }));
    resize.observe(el);
    return () => {
      resize.disconnect();
      plot.destroy();
      chart.current = null;
    };
  }, [options, height]);

  useEffect(() => {
    chart.current?.setData(data);
  }, [data]);

  return <div className="chart" ref={box} aria-hidden="true" />;
}
