import { forwardRef, useMemo, type ReactNode, type UIEvent } from 'react';

/** A log as a <pre>, with the search matches marked and the current one set apart. */
export const LogText = forwardRef<HTMLPreElement, {
  text: string;
  ranges: readonly [number, number][];
  current: number;
  label: string;
  placeholder?: string;
  onScroll?(e: UIEvent<HTMLPreElement>): void;
}>(function LogText({ text, ranges, current, label, placeholder, onScroll }, ref) {
  const content = useMemo(() => {
    if (ranges.length === 0) return text || placeholder || '';
    const parts: ReactNode[] = [];
    let at = 0;
    ranges.forEach(([s, e], i) => {
      if (s > at) parts.push(text.slice(at, s));
      parts.push(<mark key={i} className={i === current ? 'match current' : 'match'}>{text.slice(s, e)}</mark>);
      at = e;
    });
    if (at < text.length) parts.push(text.slice(at));
    return parts;
  }, [text, ranges, current, placeholder]);
  return (
    <pre ref={ref} className="log" tabIndex={0} aria-label={label} onScroll={onScroll}>
      {content}
    </pre>
  );
});
