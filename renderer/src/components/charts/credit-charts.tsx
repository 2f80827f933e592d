import { useMemo } from 'react';
import type { CreditDayView } from '../../../../protocol/api.js';
import { formatHours, msToHours as hours } from '../../format';
import { BUILDS_OPTIONS, HOURS_OPTIONS, buildsPerDay, hoursPerDay } from './chart-options';
import { ChartFigure } from './chart-figure';
import { UplotChart } from './uplot-chart';

const fmtHours = (ms: number) => formatHours(hours(ms));

/** Builds per day and CPU/wall hours per day over the last 90 days, of the farm or one volunteer. */
export function CreditCharts({ days, whose }: { days: readonly CreditDayView[]; whose: string }) {
  const builds = useMemo(() => buildsPerDay(days), [days]);
  const time = useMemo(() => hoursPerDay(days), [days]);
  const total = days.reduce((a, d) => ({ builds: a.builds + d.builds, cpuMs: a.cpuMs + d.cpuMs, wallMs: a.wallMs + d.wallMs }), { builds: 0, cpuMs: 0, wallMs: 0 });
  const busy = days.filter((d) => d.builds > 0);
  const table = (
    <table className="table compact">
      <caption className="sr-only">{whose}: per day, last 90 days (days with builds)</caption>
      <thead><tr><th scope="col">Day (UTC)</th><th scope="col" className="num">Builds</th><th scope="col" className="num">CPU hours</th><th scope="col" className="num">Wall hours</th><th scope="col" className="num">Agreed</th><th scope="col" className="num">Disagreed</th></tr></thead>
      <tbody>
        {busy.length === 0 && <tr><td colSpan={6} className="muted">No builds in the last 90 days.</td></tr>}
        {busy.map((d) => (
          <tr key={d.day}><th scope="row">{d.day}</th><td className="num">{d.builds}</td><td className="num">{fmtHours(d.cpuMs)}</td><td className="num">{fmtHours(d.wallMs)}</td><td className="num">{d.agreed}</td><td className="num">{d.disagreed}</td></tr>
        ))}
      </tbody>
    </table>
  );
  return (
    <div className="chart-grid">
      <ChartFigure
        id="builds-per-day" title="Builds per day"
        summary={<>{whose}: <strong>{total.builds}</strong> build{total.builds === 1 ? '' : 's'} in the last 90 days, on {busy.length} day{busy.length === 1 ? '' : 's'}.</>}
        chart={<UplotChart options={BUILDS_OPTIONS} data={builds} height={220} />}
        table={table}
      />
      <ChartFigure
        id="hours-per-day" title="CPU hours per day"
        summary={<>{whose}: <strong>{fmtHours(total.cpuMs)}</strong> CPU hours over <strong>{fmtHours(total.wallMs)}</strong> hours of building (wall time).</>}
        chart={<UplotChart options={HOURS_OPTIONS} data={time} height={220} />}
        table={table}
      />
    </div>
  );
}
