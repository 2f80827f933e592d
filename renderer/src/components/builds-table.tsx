import { useLayoutEffect, useRef, useState } from 'react';
import { ROW_HEIGHT, VIRTUAL_FROM, virtualWindow } from '../virtual-window';
import { BuildRow } from './build-row';

/**
 * Builds as a table: one row each, the build number linking to its page. A long list (the whole
 * history of a busy farm) scrolls inside its box and renders only the rows in view, so ten
 * thousand builds paint as fast as forty. first-rows.ts paints the same markup before React
 * is loaded: keep the two alike (test/dashboard.test.ts compares them).
 */
export function BuildsTable({ ids, caption }: { ids: readonly number[]; caption: string }) {
  const box = useRef<HTMLDivElement>(null);
  const [view, setView] = useState({ top: 0, height: 800 });
  const virtual = ids.length > VIRTUAL_FROM;

  useLayoutEffect(() => {
    const el = box.current;
    if (!el || !virtual) return;
    const measure = () => setView({ top: el.scrollTop, height: el.clientHeight || 800 });
    measure();
    el.addEventListener('scroll', measure, { passive: true });
    window.addEventListener('resize', measure);
    return () => { el.removeEventListener('scroll', measure); window.removeEventListener('resize', measure); };
  }, [virtual]);

  const w = virtual ? virtualWindow(view.top, view.height, ROW_HEIGHT, ids.length) : { start: 0, end: ids.length, before: 0, after: 0 };
  return (
    <div ref={box} className={`table-wrap${virtual ? ' table-virtual' : ''}`} {...(virtual ? { tabIndex: 0, role: 'region', 'aria-label': `${caption} (${ids.length}, scrollable)` } : {})}>
      <table className="table builds-table" aria-rowcount={ids.length + 1}>
        <caption className="sr-only">{caption}</caption>
        <thead>
          <tr aria-rowindex={1}>
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
          {w.before > 0 && <tr className="spacer" aria-hidden="true" style={{ height: w.before }} />}
          {ids.slice(w.start, w.end).map((id, i) => <BuildRow key={id} id={id} rowIndex={w.start + i + 2} />)}
          {w.after > 0 && <tr className="spacer" aria-hidden="true" style={{ height: w.after }} />}
        </tbody>
      </table>
    </div>
  );
}
