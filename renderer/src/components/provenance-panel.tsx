import { useEffect, useState } from 'react';
import type { BuildView } from '../../../protocol/api.js';
import { DIFF_CAUSE_TEXT, type DiffoscopeReport } from '../../../protocol/diffoscope-report.js';
import type { FarmKey } from '../../../protocol/provenance.js';
import { fetchDiffoscope, fetchFarmKey, provenanceUrl } from '../api';
import { useArtifacts } from '../store/hooks';

const POLL_MS = 2000;

/**
 * [provenance] The build's provenance: a bundle per artifact to check with `crowdbake verify`
 * and the farm key to pin; for replicas that disagreed, the diffoscope report of a differing
 * pair with the usual causes it shows.
 */
export function ProvenancePanel({ build }: { build: BuildView }) {
  const artifacts = useArtifacts();
  const [key, setKey] = useState<FarmKey | null>(null);
  const [diag, setDiag] = useState<DiffoscopeReport | null>(null);
  const [error, setError] = useState<string | null>(null);
  const finished = build.state === 'finished';
  const replicated = Boolean(build.verification);
  const verdict = build.verification?.verdict;

  useEffect(() => {
    fetchFarmKey().then(setKey, () => setKey(null));
  }, []);

  useEffect(() => {
    if (!replicated || !finished || verdict === 'pending') return undefined;
    let stop = false;
    let timer: ReturnType<typeof setTimeout> | undefined;
    const load = () => {
      fetchDiffoscope(build.id).then((r) => {
        if (stop) return;
        setDiag(r);
        setError(null);
        if (r.state === 'running' || (r.state === 'none' && verdict === 'disagreed')) timer = setTimeout(load, POLL_MS);
      }, (e: Error) => { if (!stop) setError(e.message); });
    };
    load();
    return () => { stop = true; if (timer) clearTimeout(timer); };
  }, [build.id, replicated, finished, verdict]);

  const served = finished && build.result === 'success' && (!replicated || verdict === 'verified') && (artifacts?.length ?? 0) > 0;
  return (
    <>
      {served && (
        <section className="section" aria-labelledby="provenance-heading">
          <h2 id="provenance-heading">Provenance</h2>
          <ul className="provenance-list">
            {artifacts!.map((a) => (
              <li key={a.name}><a href={provenanceUrl(build.id, a.name)} download={`${a.name}.provenance.json`}>{a.name}.provenance.json</a></li>
            ))}
          </ul>
          <p className="muted">
            Check a download offline: <code>crowdbake verify FILE --provenance FILE.provenance.json --farm-key {key?.keyid ?? 'sha256:…'}</code>
            {key && <> (this farm&apos;s key, <a href="/.well-known/crowdbake/farm-key">{key.farm}</a>)</>}
          </p>
        </section>
      )}
      {diag && diag.state !== 'none' && (
        <section className="section" aria-labelledby="diffoscope-heading">
          <h2 id="diffoscope-heading">Why the replicas differ</h2>
          <p data-testid="diffoscope-message">
            {diag.artifact && <><code>{diag.artifact}</code> of build #{diag.builds[0]} ({diag.workers[0]}) and #{diag.builds[1]} ({diag.workers[1]}): </>}
            {diag.message}
          </p>
          {diag.causes.length > 0 && (
            <ul className="diff-causes" aria-label="Likely causes">
              {diag.causes.map((c) => (
                <li key={c.cause}>
                  <strong>{c.cause}</strong> ({c.count}×): {DIFF_CAUSE_TEXT[c.cause]}
                  <div className="diff-example"><code>- {c.removed}</code><br /><code>+ {c.added}</code></div>
                </li>
              ))}
            </ul>
          )}
          {diag.report && (
            <details open={diag.report.length < 4000}>
              <summary>diffoscope report{diag.truncated ? ' (cut at its size limit)' : ''}</summary>
              <pre className="log diffoscope-report">{diag.report}</pre>
            </details>
          )}
          {diag.sandbox && <p className="muted">Ran on the master, sandbox: {diag.sandbox}.</p>}
        </section>
      )}
      {error && <p className="form-error" role="alert">Could not load the diffoscope report: {error}</p>}
    </>
  );
}
