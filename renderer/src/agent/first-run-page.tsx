import { useState } from 'react';
import { PageTitle } from '../components/page-title';
import { formatDuration } from '../format';
import { startMaster } from './agent-actions';
import { JoinForm } from './join-form';
import type { Preferences } from './agent-api';
import { useAgent } from './agent-store';
import { sizeText } from './limits-model';

/** What the defaults mean, in plain words, before anything runs. */
function Defaults({ p }: { p: Preferences }) {
  return (
    <ul className="plain-list" aria-label="What will run, when, within which limits">
      <li><strong>What runs:</strong> the build steps of the projects you join, each in a throwaway container (podman) that sees none of your files, has no network unless the project&apos;s builder asks for it, and is removed afterwards.</li>
      <li><strong>When:</strong> {p.when === 'idle' ? `only after ${formatDuration(p.idleAfterMs)} without keyboard or mouse input` : 'whenever there is work'}; {p.whileHere === 'freeze' ? 'the moment you touch the computer, running builds freeze' : 'while you use the computer they keep going gently'}; {p.onBattery ? 'also on battery' : 'never on battery power'}; {p.schedule ? `only ${p.schedule.start}–${p.schedule.end}` : 'at any hour'}.</li>
      <li><strong>Within:</strong> {p.cpus !== null ? `${p.cpus} CPU core(s)` : 'the CPU cores the project asks for'}, {p.memoryBytes !== null ? `${sizeText(p.memoryBytes)} of memory` : 'the memory it asks for'}, {p.diskBytes !== null ? `${sizeText(p.diskBytes)} of disk` : 'a disk limit per build where the system allows it'}; one build at a time.</li>
      <li>You can pause at any time from the tray, and change all of this on the Limits page.</li>
    </ul>
  );
}

/** Started with nothing to do: join a project (a pasted or opened crowdbake: link), or run a master here. */
export function FirstRunPage() {
  const app = useAgent((s) => s.app);
  const [masterError, setMasterError] = useState<string | null>(null);
  if (!app) return <p className="muted">Starting…</p>;
  return (
    <>
      <PageTitle>Welcome to Crowdbake</PageTitle>
      <p className="lede">Lend this computer to an open-source project: it runs the project&apos;s builds while you are away, within the limits you choose.</p>
      <div className="first-run">
        <section className="card" aria-labelledby="join-heading">
          <h2 id="join-heading">Join a project</h2>
          <JoinForm key={app.pendingJoinLink ?? ''} initial={app.pendingJoinLink ?? ''} askName />
        </section>
        <section className="card" aria-labelledby="master-heading">
          <h2 id="master-heading">Run a master on this computer</h2>
          <p>For maintainers: serve your project&apos;s builders from a folder with <code>crowdbake.yml</code> and <code>builders/</code>; its dashboard becomes one more page here.</p>
          <button type="button" onClick={() => void startMaster().then((r) => setMasterError(r.ok ? null : r.error))}>Choose the folder…</button>
          {masterError && <p className="form-error" role="alert">{masterError}</p>}
        </section>
      </div>
      <section className="section" aria-labelledby="defaults-heading">
        <h2 id="defaults-heading">What will happen once you join</h2>
        <Defaults p={app.defaults} />
      </section>
    </>
  );
}
