import type { VolunteerView } from '../../../protocol/api.js';
import { href } from '../router';
import { formatHours, msToHours as hours } from '../format';

const TRUST_LABEL = { new: 'New', trusted: 'Trusted', banned: 'Banned' } as const;

/** Listed volunteers, the most builds first, each linking to its own charts. */
export function ContributorsTable({ volunteers, selected }: { volunteers: readonly VolunteerView[]; selected: string | null }) {
  const sorted = [...volunteers].sort((a, b) => b.credit.builds - a.credit.builds || b.credit.cpuMs - a.credit.cpuMs || a.displayName.localeCompare(b.displayName));
  return (
    <div className="table-wrap">
      <table className="table contributors-table">
        <caption className="sr-only">Volunteers and what they gave, all time</caption>
        <thead>
          <tr>
            <th scope="col">Volunteer</th>
            <th scope="col">Trust</th>
            <th scope="col" className="num">Builds</th>
            <th scope="col" className="num">CPU hours</th>
            <th scope="col" className="num">Wall hours</th>
            <th scope="col" className="num">Agreed</th>
            <th scope="col" className="num">Disagreed</th>
          </tr>
        </thead>
        <tbody>
          {sorted.map((v) => (
            <tr key={v.id} aria-current={v.id === selected ? 'true' : undefined}>
              <th scope="row"><a href={href.contributors(v.id)}>{v.displayName}</a></th>
              <td><span className={`badge trust-${v.trust}`}>{TRUST_LABEL[v.trust]}</span></td>
              <td className="num">{v.credit.builds}</td>
              <td className="num">{formatHours(hours(v.credit.cpuMs))}</td>
              <td className="num">{formatHours(hours(v.credit.wallMs))}</td>
              <td className="num">{v.credit.agreed}</td>
              <td className="num">{v.credit.disagreed}</td>
            </tr>
          ))}
        </tbody>
      </table>
    </div>
  );
}
