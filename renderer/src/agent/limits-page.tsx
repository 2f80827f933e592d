import { useState } from 'react';
import { PageTitle } from '../components/page-title';
import { useAgent } from './agent-store';
import { LimitsForm } from './limits-form';

/** The volunteer's limits as a form; a save applies them to the running agent at once. */
export function LimitsPage() {
  const prefs = useAgent((s) => s.status?.preferences ?? null);
  // The form is seeded from the agent; a successful save re-seeds it from what the agent now holds.
  const [generation, setGeneration] = useState(0);
  return (
    <>
      <PageTitle>Limits</PageTitle>
      <p className="lede">When this computer builds, and how much of it a build may use. Changes apply at once and are kept across restarts.</p>
      {!prefs && <p className="muted">Asking the agent…</p>}
      {prefs && <LimitsForm key={generation} prefs={prefs} saved={generation > 0} onSaved={() => setGeneration((g) => g + 1)} />}
    </>
  );
}
