import { CELLS_PER_BUILDER } from '../store/actions';
import { useBuilderBuildIds } from '../store/hooks';
import { BuildCell } from './build-cell';

/** A builder's recent builds as a row of small coloured cells, newest on the left. */
export function BuildCells({ builder, limit = CELLS_PER_BUILDER }: { builder: string; limit?: number }) {
  const ids = useBuilderBuildIds(builder, limit);
  if (ids.length === 0) return <p className="cells-empty muted">No builds yet.</p>;
  return (
    <ol className="cells" aria-label={`Recent builds of ${builder}, newest first`}>
      {ids.map((id) => <li key={id}><BuildCell id={id} /></li>)}
    </ol>
  );
}
