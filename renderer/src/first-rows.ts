import type { BuildView } from '../../protocol/api.js';
import { buildDuration, buildStatus, formatTime, shortRevision, STATUS_LABEL } from './format';
import { href } from './routes';
import { ROW_HEIGHT, VIRTUAL_FROM, virtualWindow } from './virtual-window';

/**
 * The Builds page's first paint, before React and the protocol's schemas are loaded: the same
 * markup as the React page (app.tsx, builds-page.tsx, builds-table.tsx, build-row.tsx) built
 * with DOM calls from the prefetched answers (first-load.ts). React replaces it on its first
 * render, with the same rows. Everything from the master is set as text or as an attribute's
 * value, never parsed as HTML: builder, worker and revision are attacker-controlled.
 *
 * The answers are not checked against the schemas here (that is what the full bundle would
 * wait for): each build is checked only for what this paint reads. When anything is off,
 * nothing is painted and the full dashboard reports the answer as it always does.
 */

const STATES = new Set(['queued', 'running', 'frozen', 'finished']);
const str = (v: unknown): v is string => typeof v === 'string';
const strOrNull = (v: unknown) => v === null || typeof v === 'string';

/** Whether `v` has what a row shows, with the types the schema gives them. */
function isRow(v: unknown): v is BuildView {
  if (typeof v !== 'object' || v === null) return false;
  const b = v as Record<string, unknown>;
  return Number.isSafeInteger(b.id) && str(b.builder) && str(b.state) && STATES.has(b.state)
    && (b.result === null || (str(b.result) && b.result in STATUS_LABEL))
    && strOrNull(b.worker) && strOrNull(b.revision) && str(b.queuedAt) && strOrNull(b.startedAt) && strOrNull(b.finishedAt);
}

type Child = Node | string;

function el<K extends keyof HTMLElementTagNameMap>(tag: K, attrs: Record<string, string> = {}, ...children: Child[]): HTMLElementTagNameMap[K] {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) e.setAttribute(k, v);
  e.append(...children); // strings become text nodes
  return e;
}

const muted = (text: string) => el('span', { class: 'muted' }, text);

function brandMark(): SVGSVGElement {
  const ns = 'http://www.w3.org/2000/svg';
  const svg = document.createElementNS(ns, 'svg');
  for (const [k, v] of Object.entries({ class: 'brand-mark', viewBox: '0 0 32 32', width: '28', height: '28', 'aria-hidden': 'true', focusable: 'false' })) svg.setAttribute(k, v);
  const paths = [
    { d: 'M4 22c0-8 5.4-14 12-14s12 6 12 14v2a2 2 0 0 1-2 2H6a2 2 0 0 1-2-2z', fill: '#c98a3d' },
    { d: 'M11 13.5l2.5 4M16 12l1 4.5M21 13.5l-1.5 4', stroke: '#7a4a17', 'stroke-width': '1.8', 'stroke-linecap': 'round' },
  ];
  for (const attrs of paths) {
    const p = document.createElementNS(ns, 'path');
    for (const [k, v] of Object.entries(attrs)) p.setAttribute(k, v);
    svg.append(p);
  }
  return svg;
}

function header(): HTMLElement {
  const links = [['Builders', href.builders()], ['Grid', href.grid()], ['Builds', href.builds()], ['Workers', href.workers()], ['Contributors', href.contributors()]] as const;
  return el('header', { class: 'site-header' },
    el('a', { class: 'brand', href: href.builders() }, brandMark(), el('span', {}, 'Crowdbake')),
    el('nav', { 'aria-label': 'Main' }, el('ul', { class: 'nav-links' },
      ...links.map(([label, to]) => el('li', {}, el('a', { href: to, ...(label === 'Builds' ? { 'aria-current': 'page' } : {}) }, label))))),
    el('p', { class: 'connection connection-connecting', role: 'status', 'aria-live': 'polite' },
      el('span', { class: 'connection-dot', 'aria-hidden': 'true' }), el('span', {}, 'Connecting…')),
  );
}

function row(b: BuildView, rowIndex: number): HTMLTableRowElement {
  const status = buildStatus(b);
  const time = (iso: string) => el('time', { datetime: iso }, formatTime(iso));
  return el('tr', { 'aria-rowindex': String(rowIndex) },
    el('td', {}, el('a', { href: href.build(b.id) }, `#${b.id}`)),
    el('td', {}, b.builder),
    el('td', {}, el('span', { class: `badge status-${status}` }, STATUS_LABEL[status])),
    el('td', {}, b.worker ?? muted('—')),
    el('td', {}, b.revision ? el('code', { title: b.revision }, shortRevision(b.revision)) : muted('—')),
    el('td', {}, time(b.queuedAt)),
    el('td', {}, b.startedAt ? time(b.startedAt) : muted('—')),
    el('td', { class: 'num' }, buildDuration(b)),
  );
}

/** builds-table.tsx before its first scroll measurement (the top of the list, an 800 px view). */
function table(builds: readonly BuildView[], caption: string): HTMLElement {
  const virtual = builds.length > VIRTUAL_FROM;
  const w = virtual ? virtualWindow(0, 800, ROW_HEIGHT, builds.length) : { start: 0, end: builds.length, before: 0, after: 0 };
  const spacer = (height: number) => {
    const tr = el('tr', { class: 'spacer', 'aria-hidden': 'true' });
    tr.style.height = `${height}px`; // through the CSSOM, as React does: the CSP refuses style attributes
    return tr;
  };
  const cols = ['Build', 'Builder', 'Status', 'Worker', 'Revision', 'Queued', 'Started', 'Duration'];
  return el('div', { class: `table-wrap${virtual ? ' table-virtual' : ''}`, ...(virtual ? { tabindex: '0', role: 'region', 'aria-label': `${caption} (${builds.length}, scrollable)` } : {}) },
    el('table', { class: 'table builds-table', 'aria-rowcount': String(builds.length + 1) },
      el('caption', { class: 'sr-only' }, caption),
      el('thead', {}, el('tr', { 'aria-rowindex': '1' }, ...cols.map((c) => el('th', { scope: 'col' }, c)))),
      el('tbody', {},
        ...(w.before > 0 ? [spacer(w.before)] : []),
        ...builds.slice(w.start, w.end).map((b, i) => row(b, w.start + i + 2)),
        ...(w.after > 0 ? [spacer(w.after)] : [])),
    ),
  );
}

/**
 * Paints the Builds page (all builders) into `root` from the answers to FIRST_LOAD.recent and
 * FIRST_LOAD.queued; returns whether it did (false, and `root` untouched, when either answer
 * is missing or not a list of builds).
 */
export function paintFirstRows(root: HTMLElement, recent: unknown, queued: unknown): boolean {
  if (!Array.isArray(recent) || !Array.isArray(queued)) return false;
  const byId = new Map<number, BuildView>();
  for (const b of [...recent, ...queued] as unknown[]) {
    if (!isRow(b)) return false;
    byId.set(b.id, b);
  }
  const all = [...byId.values()].sort((a, b) => b.id - a.id);
  const waiting = all.filter((b) => b.state === 'queued').reverse();
  const history = all.filter((b) => b.state !== 'queued');
  const main = el('main', { id: 'main', tabindex: '-1' },
    el('div', { class: 'page-title' }, el('h1', { tabindex: '-1' }, 'Builds')),
    el('div', { class: 'toolbar' },
      el('label', { for: 'builder-filter' }, 'Builder'),
      el('select', { id: 'builder-filter', disabled: '' }, el('option', { value: '' }, 'All builders'))),
    el('section', { 'aria-labelledby': 'queue-heading', class: 'section' },
      el('h2', { id: 'queue-heading' }, 'Queue ', el('span', { class: 'count' }, String(waiting.length))),
      waiting.length === 0 ? el('p', { class: 'muted' }, 'Nothing is waiting.') : table(waiting, 'Queued builds, in the order they will start')),
    el('section', { 'aria-labelledby': 'recent-heading', class: 'section' },
      el('h2', { id: 'recent-heading' }, 'Recent builds'),
      history.length === 0 ? el('p', { class: 'muted' }, 'No builds have run yet.') : table(history, 'Recent builds, newest first')),
  );
  root.replaceChildren(
    el('button', { type: 'button', class: 'skip-link' }, 'Skip to content'),
    header(), main,
    el('footer', { class: 'site-footer' }, el('span', {}, 'Crowdbake build farm'), el('a', { href: '/api/v1/builders' }, 'REST API')),
  );
  root.dataset.firstPaint = 'builds';
  return true;
}
