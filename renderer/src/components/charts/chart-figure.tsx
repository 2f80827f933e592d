import type { ReactNode } from 'react';

/**
 * A chart with its title, a one-line summary, and the same numbers as a table behind
 * "Show the numbers" (for screen readers, and for anyone who wants the exact values).
 */
export function ChartFigure({ id, title, summary, chart, table }: { id: string; title: string; summary: ReactNode; chart: ReactNode; table: ReactNode }) {
  return (
    <figure className="chart-figure" aria-labelledby={`${id}-title`} data-chart={id}>
      <figcaption>
        <h2 id={`${id}-title`}>{title}</h2>
        <p className="muted">{summary}</p>
      </figcaption>
      {chart}
      <details className="chart-numbers">
        <summary>Show the numbers</summary>
        {table}
      </details>
    </figure>
  );
}
