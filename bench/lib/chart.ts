import { chromium } from 'playwright-core';

export interface Series { label: string; points: [number, number][] }
export interface Chart { title: string; x: string; y: string; logX?: boolean; series: Series[] }

const COLORS = ['#1f77b4', '#d62728', '#2ca02c', '#9467bd', '#ff7f0e'];
const W = 640;
const H = 400;
const M = { l: 70, r: 20, t: 40, b: 50 };

/** A line chart as SVG text (log-scaled x when asked; y from 0). */
export function lineChartSvg(c: Chart): string {
  const xs = c.series.flatMap((s) => s.points.map((p) => p[0]));
  const ys = c.series.flatMap((s) => s.points.map((p) => p[1]));
  const fx = c.logX ? Math.log10 : (v: number) => v;
  const [x0, x1] = [fx(Math.min(...xs)), fx(Math.max(...xs))];
  const yMax = niceCeil(Math.max(...ys, 1e-9));
  const px = (v: number): number => M.l + ((fx(v) - x0) / (x1 - x0 || 1)) * (W - M.l - M.r);
  const py = (v: number): number => H - M.b - (v / yMax) * (H - M.t - M.b);
  const out: string[] = [
    `<svg xmlns="http://www.w3.org/2000/svg" width="${W}" height="${H}" viewBox="0 0 ${W} ${H}" font-family="sans-serif" font-size="12">`,
    `<rect width="${W}" height="${H}" fill="white"/>`,
    `<text x="${W / 2}" y="22" text-anchor="middle" font-size="15" font-weight="bold">${esc(c.title)}</text>`,
  ];
  for (let i = 0; i <= 5; i++) {
    const v = (yMax * i) / 5;
    out.push(`<line x1="${M.l}" x2="${W - M.r}" y1="${py(v)}" y2="${py(v)}" stroke="#ddd"/>`,
      `<text x="${M.l - 6}" y="${py(v) + 4}" text-anchor="end">${fmt(v)}</text>`);
  }
  for (const v of [...new Set(xs)].sort((a, b) => a - b)) {
    out.push(`<line x1="${px(v)}" x2="${px(v)}" y1="${M.t}" y2="${H - M.b}" stroke="#eee"/>`,
      `<text x="${px(v)}" y="${H - M.b + 16}" text-anchor="middle">${fmt(v)}</text>`);
  }
  out.push(`<line x1="${M.l}" x2="${W - M.r}" y1="${H - M.b}" y2="${H - M.b}" stroke="#333"/>`,
    `<line x1="${M.l}" x2="${M.l}" y1="${M.t}" y2="${H - M.b}" stroke="#333"/>`,
    `<text x="${(M.l + W - M.r) / 2}" y="${H - 12}" text-anchor="middle">${esc(c.x)}${c.logX ? ' (log scale)' : ''}</text>`,
    `<text transform="translate(16 ${(M.t + H - M.b) / 2}) rotate(-90)" text-anchor="middle">${esc(c.y)}</text>`);
  c.series.forEach((s, i) => {
    const color = COLORS[i % COLORS.length]!;
    const pts = [...s.points].sort((a, b) => a[0] - b[0]);
    out.push(`<polyline fill="none" stroke="${color}" stroke-width="2" points="${pts.map(([x, y]) => `${px(x)},${py(y)}`).join(' ')}"/>`);
    for (const [x, y] of pts) out.push(`<circle cx="${px(x)}" cy="${py(y)}" r="3.5" fill="${color}"/>`);
    out.push(`<rect x="${W - M.r - 150}" y="${M.t + 4 + i * 18}" width="12" height="12" fill="${color}"/>`,
      `<text x="${W - M.r - 132}" y="${M.t + 14 + i * 18}">${esc(s.label)}</text>`);
  });
  out.push('</svg>');
  return out.join('\n');
}

/** Renders each chart in Debian's Chromium (headless, through playwright-core) and saves it as PNG. */
export async function renderPngs(charts: { file: string; chart: Chart }[]): Promise<void> {
  const browser = await chromium.launch({
    executablePath: '/usr/bin/chromium', headless: true,
    args: ['--no-sandbox', '--disable-background-networking', '--disable-component-update', '--disable-sync'],
  });
  try {
    const page = await browser.newPage({ viewport: { width: W, height: H } });
    for (const { file, chart } of charts) {
      await page.setContent(`<!doctype html><html><body style="margin:0">${lineChartSvg(chart)}</body></html>`);
      await page.locator('svg').screenshot({ path: file });
    }
  } finally {
    await browser.close();
  }
}

function niceCeil(v: number): number {
  const p = 10 ** Math.floor(Math.log10(v));
  for (const m of [1, 1.2, 1.5, 2, 2.5, 3, 4, 5, 6, 8, 10]) if (m * p >= v) return m * p;
  return 10 * p;
}

function fmt(v: number): string {
  if (v >= 10_000) return `${Math.round(v / 1000)}k`;
  if (v >= 100) return String(Math.round(v));
  return String(Number(v.toFixed(2)));
}

function esc(s: string): string {
  return s.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;');
}
