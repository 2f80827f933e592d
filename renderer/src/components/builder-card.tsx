import type { BuilderView } from '../../../protocol/api.js';
import { href } from '../router';
import { BuildCells } from './build-cells';
import { ConfigError } from './config-error';
import { ForceBuildButton } from './force-build-button';
import { LabelList } from './label-list';

/** One builder: what it is, what it needs, its recent builds as cells, and Force build. */
export function BuilderCard({ builder }: { builder: BuilderView }) {
  const headingId = `builder-${builder.name}`;
  return (
    <article className="card builder-card" aria-labelledby={headingId}>
      <div className="card-head">
        <div>
          <h2 id={headingId} className="card-title">{builder.name}</h2>
          {builder.description
            ? <p className="description">{builder.description}</p>
            : <p className="description muted">No description.</p>}
        </div>
        <ForceBuildButton builder={builder.name} />
      </div>
      <dl className="facts">
        <div>
          <dt>Executor</dt>
          <dd>{builder.requires.executor}</dd>
        </div>
        <div>
          <dt>Labels</dt>
          <dd>{builder.requires.labels.length ? <LabelList labels={builder.requires.labels} /> : <span className="muted">none</span>}</dd>
        </div>
        {builder.source && (
          <div>
            <dt>Source</dt>
            <dd><code className="wrap">{builder.source.git}</code> <span className="muted">({builder.source.branch})</span></dd>
          </div>
        )}
      </dl>
      {!builder.runnable && (
        <p className="notice notice-warning">
          <span aria-hidden="true">⚠ </span>
          {builder.error
            ? 'No connected worker can run this (or its file has never been valid). Forced builds wait in the queue.'
            : `No connected worker can run this${builder.unrunnable ? ` (${builder.unrunnable})` : ''}. Forced builds wait in the queue until one connects.`}
        </p>
      )}
      {builder.error && <ConfigError builder={builder.name} error={builder.error} />}
      <div className="cells-row">
        <BuildCells builder={builder.name} />
        <a className="more-link" href={href.builds(builder.name)}>All builds<span className="sr-only"> of {builder.name}</span></a>
      </div>
    </article>
  );
}
