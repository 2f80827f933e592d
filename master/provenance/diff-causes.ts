import type { DiffCause } from '../../protocol/diffoscope-report.js';

export interface CauseFinding {
  cause: DiffCause;
  count: number;
  /** One pair of lines that shows it. */
  removed: string;
  added: string;
}

const MONTH = '(?:Jan|Feb|Mar|Apr|May|Jun|Jul|Aug|Sep|Oct|Nov|Dec)[a-z]*';
const DAY = '(?:Mon|Tue|Wed|Thu|Fri|Sat|Sun)[a-z]*';
const TIME_PATTERNS: RegExp[] = [
  /\d{4}-\d{2}-\d{2}[T ]\d{1,2}:\d{2}(?::\d{2}(?:[.,]\d+)?)?(?:Z|[+-]\d{2}:?\d{2})?/g, // ISO 8601, tar listings
  new RegExp(`(?:${DAY},? +)?${MONTH} +\\d{1,2},? +\\d{1,2}:\\d{2}(?::\\d{2})?(?: +\\d{4})?`, 'g'), // date(1), file(1)
  new RegExp(`\\d{1,2} +${MONTH} +\\d{4}(?: +\\d{1,2}:\\d{2}(?::\\d{2})?)?`, 'g'), // RFC 2822
  /\b\d{1,2}:\d{2}:\d{2}(?:[.,]\d+)?\b/g, // a bare time of day
  /\b1[5-9]\d{8}\b|\b2\d{9}\b/g, // seconds since the epoch (2017 … 2033)
];
const PATH = /(?:\/(?:build|tmp|home|var\/tmp|work|root|srv|usr\/src|builds?)\/[^\s:'"),]*|[A-Za-z]:\\[^\s]*)/g;
const LOCALE = /\b[a-z]{2,3}_[A-Z]{2}(?:\.(?:UTF-8|utf8|ISO-8859-\d+))?\b|\bLC_[A-Z]+=|\bLANG(?:UAGE)?=/g;
const UNAME = /\b\d+\.\d+\.\d+(?:-[\w.+~-]+)?(?:-(?:amd64|arm64|generic|cloud-amd64|rt-amd64))\b|\bx86_64\b|\baarch64\b|\bGNU\/Linux\b|#\d+ SMP\b/g;
const MODE = /(?:^|\s)[-dlcbps][rwxsStT-]{9}(?=\s)/g;

const normalize = (line: string, patterns: RegExp[], token: string) => patterns.reduce((l, re) => l.replace(re, token), line);

/**
 * The changed lines of a diffoscope text report, as pairs: each hunk's removed lines against
 * its added lines, in order. diffoscope nests reports (`│ `, `├── `) and marks lines as
 * unified diffs do (`-`, `+`); the nesting is stripped.
 */
export function changedLinePairs(report: string): { removed: string[]; added: string[] }[] {
  const hunks: { removed: string[]; added: string[] }[] = [];
  let cur: { removed: string[]; added: string[] } | null = null;
  for (const raw of report.split('\n')) {
    const line = raw.replace(/^(?:[│├└]\s?(?:── )?)+/, '').replace(/^\s?(?=[-+ @])/, '');
    if (line.startsWith('---') || line.startsWith('+++')) { cur = null; continue; }
    if (line.startsWith('@@')) { cur = { removed: [], added: [] }; hunks.push(cur); continue; }
    if (!cur) continue;
    if (line.startsWith('-')) cur.removed.push(line.slice(1));
    else if (line.startsWith('+')) cur.added.push(line.slice(1));
    else if (cur.removed.length || cur.added.length) { cur = { removed: [], added: [] }; hunks.push(cur); }
  }
  return hunks.filter((h) => h.removed.length || h.added.length);
}

/**
 * Which usual causes of unreproducible bytes a diffoscope text report shows: a pair of lines
 * counts for a cause when the two become equal once that cause's variable part is masked
 * (a timestamp, a build path, a locale name, a kernel release or host, a permission
 * string); a hunk whose removed and added lines are the same lines in another order counts
 * for file order. The rest is left unexplained (the report itself says what it is).
 */
export function classifyDiff(report: string): CauseFinding[] {
  const found = new Map<DiffCause, CauseFinding>();
  const add = (cause: DiffCause, removed: string, added: string) => {
    const f = found.get(cause);
    if (f) f.count++;
    else found.set(cause, { cause, count: 1, removed: removed.trim().slice(0, 300), added: added.trim().slice(0, 300) });
  };
  const rules: [DiffCause, RegExp[], string][] = [
    ['timestamps', TIME_PATTERNS, '<TIME>'], ['build-paths', [PATH], '<PATH>'], ['locale', [LOCALE], '<LOCALE>'],
    ['uname', [UNAME], '<UNAME>'], ['file-modes', [MODE], ' <MODE>'],
  ];
  for (const h of changedLinePairs(report)) {
    const sorted = (l: string[]) => [...l].sort().join('\n');
    if (h.removed.length > 1 && h.removed.length === h.added.length && sorted(h.removed) === sorted(h.added) && h.removed.join('\n') !== h.added.join('\n')) {
      add('file-order', h.removed[0]!, h.added[0]!);
      continue;
    }
    for (let i = 0; i < Math.min(h.removed.length, h.added.length); i++) {
      const a = h.removed[i]!;
      const b = h.added[i]!;
      let explained = false;
      for (const [cause, patterns, token] of rules) {
        const na = normalize(a, patterns, token);
        const nb = normalize(b, patterns, token);
        if (na !== a && na === nb) { add(cause, a, b); explained = true; break; }
      }
      if (!explained) {
        // Several causes in one line (a tar entry with another mtime and mode): mask them all.
        const all = (l: string) => rules.reduce((x, [, p, t]) => normalize(x, p, t), l);
        if (all(a) === all(b)) for (const [cause, patterns, token] of rules) if (normalize(a, patterns, token) !== normalize(b, patterns, token)) add(cause, a, b);
      }
    }
  }
  return [...found.values()].sort((x, y) => y.count - x.count);
}
