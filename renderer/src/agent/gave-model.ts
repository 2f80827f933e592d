import type { HistoryEntry } from './agent-api';

/** One day of what this computer gave one project. */
export interface GaveDay {
  /** Local midnight of the day, ms. */
  day: number;
  builds: Record<string, number>;
  /** Hours spent building (from start to end, frozen time left out), per project. */
  hours: Record<string, number>;
  /** CPU hours the builds' sandboxes used (their cgroup's counter), per project, where measured. */
  cpuHours: Record<string, number>;
}

/** Which project a history entry's master belongs to (its host), or null for local re-runs and masters no longer joined. */
export function projectOf(master: string, projects: readonly { name: string; master: string }[]): string | null {
  const host = (u: string) => { try { return new URL(u).host; } catch { return null; } };
  const h = host(master);
  return h === null ? null : projects.find((p) => host(p.master) === h)?.name ?? null;
}

const midnight = (t: number) => { const d = new Date(t); d.setHours(0, 0, 0, 0); return d.getTime(); };

/**
 * Builds and build hours per day per project over the last `days` days (oldest first, every
 * day present), from the local history. Local re-runs gave nothing to any project and are
 * left out; a build still running counts up to `now`.
 */
export function gaveByDay(history: readonly HistoryEntry[], projects: readonly { name: string; master: string }[], now: number, days = 14): { days: GaveDay[]; projects: string[] } {
  const first = midnight(now - (days - 1) * 86_400_000);
  const out: GaveDay[] = [];
  for (let i = 0, d = first; i < days; i++) {
    out.push({ day: d, builds: {}, hours: {}, cpuHours: {} });
    const next = new Date(d); next.setDate(next.getDate() + 1); d = next.getTime();
  }
  const seen = new Set<string>();
  for (const h of history) {
    if (h.rerunOf !== null) continue;
    const project = projectOf(h.master, projects);
    if (project === null) continue;
    const start = Date.parse(h.startedAt);
    const slot = out.find((d, i) => start >= d.day && (i === out.length - 1 || start < out[i + 1]!.day));
    if (!slot) continue;
    seen.add(project);
    const end = h.finishedAt ? Date.parse(h.finishedAt) : now;
    slot.builds[project] = (slot.builds[project] ?? 0) + 1;
    slot.hours[project] = (slot.hours[project] ?? 0) + Math.max(0, end - start - h.frozenMs) / 3_600_000;
    if (h.cpuMs != null) slot.cpuHours[project] = (slot.cpuHours[project] ?? 0) + h.cpuMs / 3_600_000;
  }
  return { days: out, projects: [...seen].sort() };
}
