export function LabelList({ labels }: { labels: readonly string[] }) {
  return (
    <ul className="labels">
      {labels.map((l) => <li key={l} className="label">{l}</li>)}
    </ul>
  );
}
