import { useHash } from '../router';
import { SkipLink } from '../components/skip-link';
import { useFocusOnNavigate } from '../components/use-focus-on-navigate';
import { AgentHeader } from './agent-header';
import { AgentRoutePage } from './agent-route-page';
import { parseAgentRoute } from './agent-router';
import { useAgent } from './agent-store';
import { SignInNeeded } from './sign-in-needed';

/** The volunteer pages, served by the local agent: header, the page the hash names. */
export function AgentApp() {
  const hash = useHash();
  const route = parseAgentRoute(hash);
  const signedOut = useAgent((s) => s.signedOut);
  useFocusOnNavigate(hash);
  return (
    <>
      <SkipLink target="main" />
      <AgentHeader route={route} />
      <main id="main" tabIndex={-1}>
        {signedOut ? <SignInNeeded /> : <AgentRoutePage route={route} />}
      </main>
      <footer className="site-footer">
        <span>Crowdbake volunteer agent · only this computer can open these pages</span>
      </footer>
    </>
  );
}
