import type { EnrollmentView } from '../../../protocol/api.js';

const JOIN_MODE = {
  invite: 'Volunteers join with an invitation from the maintainers.',
  open: 'Anyone may join with the farm’s public link, as a new volunteer.',
  closed: 'The farm takes no new volunteers at the moment.',
} as const;

/** The farm's rules for joining and for earning trust, in words (GET /api/v1/enrollment). */
export function EarnedTrustRules({ enrollment }: { enrollment: EnrollmentView }) {
  const k = enrollment.promoteAfter;
  return (
    <section className="card rules" aria-labelledby="rules-title">
      <h2 id="rules-title">How trust is earned</h2>
      <ul>
        <li>{JOIN_MODE[enrollment.mode]} Everyone starts as <strong>new</strong>.</li>
        <li>
          Builders that check results run each build on several workers of different people and compare the artifacts byte for byte;
          a result counts when more than half of the replicas made identical ones.
        </li>
        {k > 0
          ? <li>A new volunteer whose last <strong>{k}</strong> replicated results all agreed with the majority is promoted to <strong>trusted</strong> (trusted volunteers may run the builders that ask for them).</li>
          : <li>Trust is not earned automatically on this farm: the maintainers promote volunteers.</li>}
        {enrollment.fewerReplicasAfter > 0 && (
          <li>
            A volunteer whose last <strong>{enrollment.fewerReplicasAfter}</strong> replicated results all agreed needs <strong>fewer replicas</strong>:
            when one of their workers takes a replica, the build’s replicas still waiting are dropped down to the builder’s minimum
            (<code>verify.minReplicas</code>). That spends their count: after each result checked by no one they need {enrollment.fewerReplicasAfter} more agreeing ones before the next.
          </li>
        )}
        <li>One result that disagrees resets the count, flags the worker that made it, and takes back trust that was earned (not trust a maintainer gave).</li>
        <li>Every change of a volunteer’s trust is recorded with its reason.</li>
      </ul>
    </section>
  );
}
