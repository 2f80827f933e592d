import { PageTitle } from '../components/page-title';

/** The agent refused this browser: it has not signed in (or the agent restarted since). */
export function SignInNeeded() {
  return (
    <>
      <PageTitle>Sign in from this computer</PageTitle>
      <div className="empty">
        <p>These pages show and change this computer&apos;s Crowdbake agent, so they open only through a one-time link.</p>
        <p className="muted">In a terminal, run <code>crowdbake ui</code> (it opens the link), or open the desktop app. A sign-in lasts until the agent restarts.</p>
      </div>
    </>
  );
}
