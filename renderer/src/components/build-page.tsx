import { useEffect } from 'react';
import { href } from '../router';
import { openBuild } from '../store/actions';
import { useBuild, useBuildError } from '../store/hooks';
import { ArtifactList } from './artifact-list';
import { BuildActions } from './build-actions';
import { BuildStatusBadge } from './build-status-badge';
import { BuildSummary } from './build-summary';
import { LogView } from './log-view';
import { PageTitle } from './page-title';
import { ProvenancePanel } from './provenance-panel';
import { StepList } from './step-list';

/** One build: summary, Cancel/Rebuild, steps, the live log, the artifacts and their provenance. */
export function BuildPage({ id }: { id: number }) {
  const build = useBuild(id);
  const error = useBuildError();

  useEffect(() => {
    void openBuild(id);
  }, [id]);

  return (
    <>
      <nav className="crumbs" aria-label="Breadcrumb">
        <a href={href.builds()}>Builds</a>
        <span aria-hidden="true"> / </span>
        <span aria-current="page">#{id}</span>
      </nav>
      <PageTitle
        title={build ? `Build #${id} of ${build.builder}` : `Build #${id}`}
        extra={build && <BuildStatusBadge build={build} />}
      >
        Build #{id}{build && <span className="title-sub"> · {build.builder}</span>}
      </PageTitle>
      {error && !build && <p className="form-error" role="alert">{error}</p>}
      {!error && !build && <p className="muted">Loading build…</p>}
      {build && (
        <>
          <BuildActions build={build} />
          <BuildSummary build={build} />
          <section className="section" aria-labelledby="steps-heading">
            <h2 id="steps-heading">Steps</h2>
            <StepList build={build} />
          </section>
          <section className="section" aria-labelledby="log-heading">
            <h2 id="log-heading">Log</h2>
            <LogView build={build} />
          </section>
          <section className="section" aria-labelledby="artifacts-heading">
            <h2 id="artifacts-heading">Artifacts</h2>
            <ArtifactList build={build} />
          </section>
          <ProvenancePanel build={build} />
        </>
      )}
    </>
  );
}
