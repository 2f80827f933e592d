import type { BuildView } from '../../../protocol/api.js';
import { artifactUrl } from '../api';
import { formatBytes } from '../format';
import { useArtifacts, useArtifactsError } from '../store/hooks';

/** What the build uploaded: download links with size and SHA-256. */
export function ArtifactList({ build }: { build: BuildView }) {
  const artifacts = useArtifacts();
  const error = useArtifactsError();
  if (error) return <p className="form-error" role="alert">Could not load the artifacts: {error}</p>;
  if (artifacts === null) return <p className="muted">Loading artifacts…</p>;
  if (artifacts.length === 0) {
    return <p className="muted">{build.state === 'finished' ? 'This build has no artifacts.' : 'Artifacts appear here when the build uploads them.'}</p>;
  }
  return (
    <div className="table-wrap">
      <table className="table artifacts-table">
        <caption className="sr-only">Artifacts of build #{build.id}</caption>
        <thead>
          <tr>
            <th scope="col">File</th>
            <th scope="col" className="num">Size</th>
            <th scope="col">SHA-256</th>
            <th scope="col">From worker</th>
          </tr>
        </thead>
        <tbody>
          {artifacts.map((a) => (
            <tr key={a.name}>
              <td><a href={artifactUrl(build.id, a.name)} download={a.name}>{a.name}</a></td>
              <td className="num" title={`${a.size} bytes`}>{formatBytes(a.size)}</td>
              <td><code className="hash">{a.sha256}</code></td>
              <td>{a.worker ?? <span className="muted">—</span>}</td>
            </tr>
          ))}
        </tbody>
      </table>
    </div>
  );
}
