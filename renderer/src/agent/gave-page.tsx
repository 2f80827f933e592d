import { useEffect, useMemo } from 'react';
import { PageTitle } from '../components/page-title';
import { refreshHistory, refreshProjects } from './agent-actions';
import { useAgent } from './agent-store';
import { GaveChart } from './gave-chart';
import { gaveByDay, type GaveDay } from './gave-model';

const dayLabel = (t: number) => new Date(t).toLocaleDateString(undefined, { weekday: 'short', month: 'short', day: 'numeric' });

/** What this computer gave: builds and build hours per day per project, the last two weeks, from its own history. */
export function GavePage() {
  useEffect(() => { void refreshHistory(); void refreshProjects(); }, []);
  const history = useAgent((s) => s.history);
  const projects = useAgent((s) => s.projects);
  const { days, projects: names } = useMemo(() => gaveByDay(history, projects, Date.now()), [history, projects]);
  const total = (what: 'builds' | 'hours' | 'cpuHours', p: string) => days.reduce((a, d) => a + (d[what][p] ?? 0), 0);
  // CPU time is measured from container builds' cgroups; host and VM builds only have their build time.
  const measured = days.some((d) => Object.keys(d.cpuHours).length > 0);
  const cell = (d: GaveDay, p: string) => `${d.builds[p] ?? 0} build(s), ${(d.hours[p] ?? 0).toFixed(2)} h${d.cpuHours[p] !== undefined ? `, ${d.cpuHours[p]!.toFixed(2)} CPU h` : ''}`;
  return (
    <>
      <PageTitle>What this computer gave</PageTitle>
      <p className="lede">Builds this computer ran for each project over the last 14 days, the hours it spent building them (frozen time left out) and, for container builds, the CPU hours they used (measured from their cgroup), from its own history.</p>
      {names.length === 0 && <p className="muted">Nothing yet: builds appear here once this computer has run some for a project.</p>}
      {names.length > 0 && (
        <>
          <div className="gave-charts">
            <GaveChart days={days} projects={names} what="builds" label="Builds per day" />
            {measured
              ? <GaveChart days={days} projects={names} what="cpuHours" label="CPU hours per day (container builds)" />
              : <GaveChart days={days} projects={names} what="hours" label="Build hours per day" />}
          </div>
          <table className="table gave-table">
            <caption className="sr-only">Builds and build hours per day and project</caption>
            <thead><tr><th scope="col">Day</th>{names.map((p) => <th key={p} scope="col">{p}</th>)}</tr></thead>
            <tbody>
              {days.filter((d) => Object.keys(d.builds).length > 0).map((d) => (
                <tr key={d.day}><th scope="row">{dayLabel(d.day)}</th>{names.map((p) => <td key={p}>{d.builds[p] ? cell(d, p) : '—'}</td>)}</tr>
              ))}
            </tbody>
            <tfoot><tr><th scope="row">14 days</th>{names.map((p) => <td key={p}>{total('builds', p)} build(s), {total('hours', p).toFixed(2)} h{measured ? `, ${total('cpuHours', p).toFixed(2)} CPU h` : ''}</td>)}</tr></tfoot>
          </table>
        </>
      )}
    </>
  );
}
