import { useEffect, useState } from 'react';
import { PageTitle } from '../components/page-title';
import { formatDuration } from '../format';
import { leaveProject, refreshProjects, setShare } from './agent-actions';
import type { ProjectView } from './agent-api';
import { useAgent } from './agent-store';
import { JoinForm } from './join-form';

function ProjectRow({ p, total }: { p: ProjectView; total: number }) {
  const [share, setShareText] = useState(String(p.share));
  const [error, setError] = useState<string | null>(null);
  const [confirm, setConfirm] = useState(false);
  const save = async () => {
    const n = Number(share);
    if (!Number.isFinite(n) || n <= 0) { setError('Share: a positive number, such as 1 or 2'); return; }
    const r = await setShare(p.name, n);
    setError(r.ok ? null : r.error);
  };
  return (
    <tr>
      <th scope="row">{p.farm || p.name}<div className="muted small">{p.name}</div></th>
      <td><code className="wrap">{p.master}</code><div className="muted small">as {p.worker}</div></td>
      <td>{p.state}{p.running ? ` · ${p.running} running` : ''}{p.usedSeconds ? ` · ${formatDuration(p.usedSeconds * 1000)} used` : ''}</td>
      <td>
        <label className="sr-only" htmlFor={`share-${p.name}`}>Share of {p.name}</label>
        <input id={`share-${p.name}`} className="share-input" inputMode="decimal" value={share} onChange={(e) => setShareText(e.target.value)} />
        <button type="button" onClick={() => void save()}>Set</button>
        <span className="muted small"> {total > 0 ? `${Math.round((p.share / total) * 100)}% of the slots` : ''}</span>
        {error && <p className="form-error" role="alert">{error}</p>}
      </td>
      <td>
        {confirm
          ? <><button type="button" className="button-danger" onClick={() => void leaveProject(p.name)}>Leave {p.name}</button> <button type="button" onClick={() => setConfirm(false)}>Keep</button></>
          : <button type="button" onClick={() => setConfirm(true)}>Leave…</button>}
      </td>
    </tr>
  );
}

/** The projects this computer serves, each with its share and status; change a share, leave, join another. */
export function ProjectsPage() {
  useEffect(() => { void refreshProjects(); const t = setInterval(() => void refreshProjects(), 2000); return () => clearInterval(t); }, []);
  const projects = useAgent((s) => s.projects);
  const loaded = useAgent((s) => s.projectsLoaded);
  const error = useAgent((s) => s.projectsError);
  const total = projects.reduce((a, p) => a + p.share, 0);
  return (
    <>
      <PageTitle>Projects</PageTitle>
      <p className="lede">When several projects have work, each gets build slots in proportion to its share.</p>
      {error && <div className="banner banner-error" role="alert">{error}</div>}
      {!loaded && <p className="muted">Asking the agent…</p>}
      {loaded && projects.length === 0 && <p className="muted">No project joined yet.</p>}
      {projects.length > 0 && (
        <table className="table">
          <thead><tr><th scope="col">Project</th><th scope="col">Master</th><th scope="col">Status</th><th scope="col">Share</th><th scope="col"><span className="sr-only">Leave</span></th></tr></thead>
          <tbody>{projects.map((p) => <ProjectRow key={`${p.name}-${p.share}`} p={p} total={total} />)}</tbody>
        </table>
      )}
      <section className="section" aria-labelledby="join-another">
        <h2 id="join-another">Join another project</h2>
        <div className="card"><JoinForm /></div>
      </section>
    </>
  );
}
