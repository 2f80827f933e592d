import { useMemo } from 'react';
import type { CapacityBucketView } from '../../../../protocol/api.js';
import { CAPACITY_OPTIONS, DAY_NAMES, capacityByHour } from './chart-options';
import { ChartFigure } from './chart-figure';
import { UplotChart } from './uplot-chart';

/** How many workers were accepting builds, by hour of the week (UTC), averaged over every week sampled. */
export function CapacityChart({ buckets }: { buckets: readonly CapacityBucketView[] }) {
  const data = useMemo(() => capacityByHour(buckets), [buckets]);
  const sampled = buckets.filter((b) => b.samples > 0);
  const best = sampled.reduce<CapacityBucketView | null>((a, b) => (!a || b.average > a.average ? b : a), null);
  const byHour = new Map(buckets.map((b) => [b.hourOfWeek, b]));
  const summary = best
    ? <>Most capacity on {DAY_NAMES[Math.floor(best.hourOfWeek / 24)]} at {String(best.hourOfWeek % 24).padStart(2, '0')}:00 UTC: <strong>{best.average.toFixed(1)}</strong> workers accepting on average (at most {best.max}). {sampled.length} of 168 hours sampled.</>
    : <>No samples yet: the master counts the workers accepting builds once a minute.</>;
  return (
    <ChartFigure
      id="capacity" title="Capacity by hour of the week"
      summary={summary}
      chart={<UplotChart options={CAPACITY_OPTIONS} data={data} height={220} />}
      table={(
        <div className="table-wrap">
          <table className="table compact capacity-table">
            <caption className="sr-only">Workers accepting on average, by day and hour (UTC)</caption>
            <thead><tr><th scope="col">Day</th>{Array.from({ length: 24 }, (_, h) => <th key={h} scope="col" className="num">{h}</th>)}</tr></thead>
            <tbody>
              {DAY_NAMES.map((name, d) => (
                <tr key={name}>
                  <th scope="row">{name}</th>
                  {Array.from({ length: 24 }, (_, h) => {
                    const b = byHour.get(d * 24 + h);
                    return <td key={h} className="num">{b && b.samples ? b.average.toFixed(1) : '·'}</td>;
                  })}
                </tr>
              ))}
            </tbody>
          </table>
        </div>
      )}
    />
  );
}
