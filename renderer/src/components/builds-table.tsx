import { BuildRow } from './build-row';

/** Builds as a table: one row each, the build number linking to its page. */
export function BuildsTable({ ids, caption }: { ids: readonly number[]; caption: string }) {
  return (
    <div className="table-wrap">
      <table className="table builds-table">
        <caption className="sr-only">{caption}</caption>
        <thead>
          <tr>
            <th scope="col">Build</th>
            <th scope="col">Builder</th>
            <th scope="col">Status</th>
            <th scope="col">Worker</th>
            <th scope="col">Revision</th>
            <th scope="col">Queued</th>
            <th scope="col">Started</th>
            <th scope="col">Duration</th>
          </tr>
        </thead>
        <tbody>
          {ids.map((id) => <BuildRow key={id} id={id} />)}
        </tbody>
      </table>
    </div>
  );
}
