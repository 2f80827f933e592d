import { WEEK_ORDER, WEEKDAYS, WeekScheduleSchema, type WeekSchedule, type Weekday } from './control-api.js';

/**
 * A per-weekday schedule as a person types it (the CLI's `--week`, the window's Limits page):
 * `mon-fri 18:00-08:00; sat,sun any; wed never`. Each part is days (a name, a range or a
 * list) then `any`, `never` or windows (`HH:MM-HH:MM`, several separated by commas). Days not
 * named may build any time. Throws a sentence naming the part it cannot read.
 */
export function parseWeekText(text: string): WeekSchedule {
  const out: Partial<Record<Weekday, { start: string; end: string }[]>> = {};
  const parts = text.split(';').map((p) => p.trim()).filter(Boolean);
  if (!parts.length) throw new Error('the weekly schedule is empty (e.g. "mon-fri 18:00-08:00; sat,sun any")');
  for (const part of parts) {
    const m = /^([a-z,\s-]+?)\s+(any|never|[\d:,\s-]+)$/i.exec(part);
    if (!m) throw new Error(`"${part}" is not DAYS then any, never or HH:MM-HH:MM (e.g. "mon-fri 18:00-08:00")`);
    const days = parseDays(m[1]!.trim().toLowerCase(), part);
    const what = m[2]!.trim().toLowerCase();
    let windows: { start: string; end: string }[] | undefined;
    if (what === 'any') windows = undefined;
    else if (what === 'never') windows = [];
    else {
      windows = what.split(',').map((w) => w.trim()).map((w) => {
        const r = /^(\d\d:\d\d)-(\d\d:\d\d)$/.exec(w);
        if (!r) throw new Error(`"${w}" in "${part}" is not HH:MM-HH:MM`);
        return { start: r[1]!, end: r[2]! };
      });
    }
    for (const d of days) {
      if (d in out) throw new Error(`${d} is named twice ("${part}")`);
      out[d] = windows;
    }
  }
  const parsed = WeekScheduleSchema.safeParse(Object.fromEntries(Object.entries(out).filter(([, v]) => v !== undefined)));
  if (!parsed.success) throw new Error(`the weekly schedule: ${parsed.error.issues[0]?.path.join('.')} ${parsed.error.issues[0]?.message}`);
  return parsed.data;
}

function parseDays(text: string, part: string): Weekday[] {
  const out: Weekday[] = [];
  for (const piece of text.split(',').map((p) => p.trim()).filter(Boolean)) {
    const [a, b] = piece.split('-').map((x) => x.trim().slice(0, 3)) as [string, string | undefined];
    const i = WEEKDAYS.indexOf(a as Weekday);
    const j = b === undefined ? i : WEEKDAYS.indexOf(b as Weekday);
    if (i < 0 || j < 0) throw new Error(`"${piece}" in "${part}" is not a weekday (mon, tue, wed, thu, fri, sat, sun, or a range like mon-fri)`);
    for (let k = i; ; k = (k + 1) % 7) { out.push(WEEKDAYS[k]!); if (k === j) break; }
  }
  return out;
}

/** The schedule back as text, in the same form (days not listed are left out). */
export function formatWeekText(week: WeekSchedule): string {
  return WEEK_ORDER.filter((d) => week[d] !== undefined)
    .map((d) => `${d} ${week[d]!.length ? week[d]!.map((w) => `${w.start}-${w.end}`).join(',') : 'never'}`).join('; ');
}
