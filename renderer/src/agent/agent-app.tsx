// Its styles (agent-app.css) are part of app.css: boot.ts imports them.
import { useHash } from '../router';
import { SkipLink } from '../components/skip-link';
import { useFocusOnNavigate } from '../components/use-focus-on-navigate';
import { AgentHeader } from './agent-header';
import { AgentRoutePage } from './agent-route-page';
import { parseAgentRoute } from './agent-router';
import { useAgent } from './agent-store';
import { SignInNeeded } from './sign-in-needed';
import { FirstRunPage } from './first-run-page';
import { UpdateBanner } from './update-banner';

/** The volunteer pages (served by the local agent, or the desktop app's window): header, the page the hash names; the first-run screen in the app when nothing is joined. */
export function AgentApp() {
  const hash = useHash();
  const route = parseAgentRoute(hash);
  const signedOut = useAgent((s) => s.signedOut);
  const firstRun = useAgent((s) => s.app?.firstRun ?? false);
  const inApp = useAgent((s) => s.app !== null);
  useFocusOnNavigate(hash);
  return (
    <>
      <SkipLink target="main" />
      {!firstRun && <AgentHeader route={route} />}
      <main id="main" tabIndex={-1}>
        <UpdateBanner />
        {firstRun ? <FirstRunPage /> : signedOut ? <SignInNeeded /> : <AgentRoutePage route={route} />}
      </main>
      <footer className="site-footer">
        <span>{inApp ? 'Crowdbake desktop app · this computer’s own pages' : 'Crowdbake volunteer agent · only this computer can open these pages'}</span>
      </footer>
    </>
  );
}
