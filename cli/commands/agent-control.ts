import type { AgentStatus, HistoryEntry } from '../../protocol/control-api.js';
import { formatDuration, formatSize } from '../../protocol/units.js';
import { ControlClient } from '../control-client.js';
import { duration, parse, positiveNumber, size, str, oneOf, UsageError } from '../args.js';
import { defaultDataDir } from '../paths.js';
import { formatWeekText, parseWeekText } from '../../protocol/week-text.js';

const DATA_HELP = `  --data DIR   the worker's data directory (default: ${defaultDataDir('worker')})`;

const HELP: Record<string, string> = {
  status: `usage: crowdbake status [--json] [--data DIR]\n\nThe local agent's state, idle source, current builds and limits.\n  --json       machine-readable\n${DATA_HELP}\n`,
  pause: `usage: crowdbake pause [--for DUR | --after-current] [--data DIR]\n\nFreezes running builds and takes no new ones until \`crowdbake resume\`.\n  --for DUR         snooze: resume by itself after DUR (e.g. 1h)\n  --after-current   finish the builds running now (not frozen), then pause; kept across a restart\n${DATA_HELP}\n`,
  resume: `usage: crowdbake resume [--data DIR]\n\nEnds a pause or snooze.\n${DATA_HELP}\n`,
  limits: `usage: crowdbake limits [--cpus N] [--memory SIZE] [--disk SIZE] [--when idle|always] [--idle-after DUR]
                        [--schedule HH:MM-HH:MM|any] [--week TEXT|off] [--on-battery yes|no] [--max-other-cpu PCT|off]
                        [--cpu-grace DUR] [--while-here freeze|gently] [--here-cpus N|none] [--here-cpu-percent P|none]
                        [--max-temp C|off] [--start-paused yes|no] [--data DIR]

Shows the volunteer's limits; with flags, changes them (applied at once and saved).
  --cpus N / --memory SIZE / --disk SIZE   caps for builds while you are away ("none" removes a cap)
  --while-here freeze|gently   while you use the computer: freeze builds (default), or keep them going
                               within --here-cpus N cores / --here-cpu-percent P % of all CPUs
  --week TEXT                  a schedule per weekday, e.g. "mon-fri 18:00-08:00; sat,sun any; wed never"
                               (replaces --schedule; "off" removes it)
  --cpu-grace DUR              other programs' CPU use must last this long before it holds builds (default 30s)
  --max-temp C|off             above C °C (hottest /sys/class/thermal zone) throttle to the here-limits, 5 °C above hold
  --start-paused yes|no        start paused after a restart of the agent
${DATA_HELP}\n`,
  history: `usage: crowdbake history [--limit N] [--log ID] [--data DIR]\n\nBuilds this machine ran, newest first; --log ID prints one build's log.\n${DATA_HELP}\n`,
};

/** `crowdbake status|pause|resume|limits|history`: talk to the local agent's control API. */
export function agentControlCommand(command: 'status' | 'pause' | 'resume' | 'limits' | 'history') {
  return async (argv: string[]): Promise<number> => {
    const { values } = parse(argv, {
      data: { type: 'string' }, json: { type: 'boolean' }, for: { type: 'string' }, cpus: { type: 'string' },
      memory: { type: 'string' }, disk: { type: 'string' }, when: { type: 'string' }, 'idle-after': { type: 'string' },
      schedule: { type: 'string' }, 'on-battery': { type: 'string' }, 'max-other-cpu': { type: 'string' },
      limit: { type: 'string' }, log: { type: 'string' }, week: { type: 'string' }, 'cpu-grace': { type: 'string' },
      'while-here': { type: 'string' }, 'here-cpus': { type: 'string' }, 'here-cpu-percent': { type: 'string' },
      'max-temp': { type: 'string' }, 'start-paused': { type: 'string' }, 'after-current': { type: 'boolean' },
    });
    if (values.help) { process.stdout.write(HELP[command]!); return 0; }
    const patch = command === 'limits' ? limitsPatch(values) : {};
    const opened = ControlClient.open(str(values, 'data') ?? defaultDataDir('worker'));
    if ('offline' in opened) {
      if (command === 'status') {
        if (values.json) console.log(JSON.stringify({ state: 'offline', reason: opened.offline }));
        else console.log(`offline: ${opened.offline}`);
        return 0;
      }
      console.error(`crowdbake ${command}: ${opened.offline}`);
      return 1;
    }
    const c = opened.client;
    switch (command) {
      case 'status': {
        const s = await c.call<AgentStatus>('GET', '/status');
        if (values.json) console.log(JSON.stringify(s));
        else printStatus(s);
        return 0;
      }
      case 'pause': {
        const forMs = duration(values, 'for');
        if (values['after-current'] && forMs !== undefined) throw new UsageError('use --for or --after-current, not both');
        if (values['after-current']) await c.call('PATCH', '/preferences', { pauseAfterCurrent: true });
        const s = values['after-current'] ? await c.call<AgentStatus>('GET', '/status') : forMs !== undefined ? await c.call<AgentStatus>('POST', '/snooze', { duration: `${forMs}ms` }) : await c.call<AgentStatus>('POST', '/pause');
        console.log(`${s.state}: ${s.reason}`);
        return 0;
      }
      case 'resume': {
        const s = await c.call<AgentStatus>('POST', '/resume');
        console.log(`${s.state}: ${s.reason}`);
        return 0;
      }
      case 'limits': {
        if (Object.keys(patch).length) await c.call('PATCH', '/preferences', patch);
        printStatus(await c.call<AgentStatus>('GET', '/status'), true);
        return 0;
      }
      case 'history': {
        const id = str(values, 'log');
        if (id !== undefined) {
          if (!/^\d+$/.test(id)) throw new UsageError(`--log "${id}" must be a build number from \`crowdbake history\``);
          process.stdout.write(await c.call<string>('GET', `/history/${id}/log`));
          return 0;
        }
        const limit = positiveNumber(values, 'limit') ?? 20;
        const rows = await c.call<HistoryEntry[]>('GET', `/history?limit=${Math.floor(limit)}`);
        for (const h of rows) {
          console.log(`${h.id}\t${h.startedAt}\t${h.builder}\tbuild ${h.buildId}.${h.attempt}\t${h.result ?? 'running'}${h.frozenMs ? `\tfrozen ${formatDuration(h.frozenMs)}` : ''}`);
        }
        return 0;
      }
    }
  };
}

function limitsPatch(values: Record<string, unknown>): Record<string, unknown> {
  const patch: Record<string, unknown> = {};
  const cap = (flag: string, key: string, parse: () => number | undefined) => {
    const v = str(values, flag);
    if (v === undefined) return;
    patch[key] = v === 'none' ? null : parse();
  };
  cap('cpus', 'cpus', () => positiveNumber(values, 'cpus'));
  cap('memory', 'memory', () => size(values, 'memory'));
  cap('disk', 'disk', () => size(values, 'disk'));
  if (str(values, 'when') !== undefined) patch.when = oneOf(values, 'when', ['idle', 'always'] as const, 'idle');
  const idleAfter = duration(values, 'idle-after');
  if (idleAfter !== undefined) patch.idleAfter = `${idleAfter}ms`;
  const schedule = str(values, 'schedule');
  if (schedule !== undefined) {
    if (schedule === 'any') patch.schedule = null;
    else {
      const m = /^(([01]\d|2[0-3]):[0-5]\d)-(([01]\d|2[0-3]):[0-5]\d)$/.exec(schedule);
      if (!m) throw new UsageError(`--schedule "${schedule}" must be HH:MM-HH:MM (e.g. 22:00-07:00) or any`);
      patch.schedule = { start: m[1], end: m[3] };
    }
  }
  const battery = str(values, 'on-battery');
  if (battery !== undefined) patch.onBattery = oneOf(values, 'on-battery', ['yes', 'no'] as const, 'no') === 'yes';
  // A number in a range, or a word that removes the setting (null); absent flags change nothing.
  const bounded = (flag: string, key: string, min: number, max: number, off: 'off' | 'none', unit = '') => {
    const v = str(values, flag);
    if (v === undefined) return;
    const n = Number(v);
    if (v !== off && !(n >= min && n <= max)) throw new UsageError(`--${flag} "${v}" must be ${min}-${max}${unit} or ${off}`);
    patch[key] = v === off ? null : n;
  };
  bounded('max-other-cpu', 'maxOtherCpuPercent', 1, 100, 'off');
  const week = str(values, 'week');
  if (week !== undefined) {
    try { patch.weekSchedule = week === 'off' ? null : parseWeekText(week); } catch (e) { throw new UsageError(`--week: ${(e as Error).message}`); }
  }
  const grace = duration(values, 'cpu-grace');
  if (grace !== undefined) patch.otherCpuGrace = `${grace}ms`;
  if (str(values, 'while-here') !== undefined) patch.whileHere = oneOf(values, 'while-here', ['freeze', 'gently'] as const, 'freeze');
  cap('here-cpus', 'hereCpus', () => positiveNumber(values, 'here-cpus'));
  bounded('here-cpu-percent', 'hereCpuPercent', 1, 100, 'none');
  bounded('max-temp', 'maxTemperatureC', 30, 110, 'off', ' (°C)');
  if (str(values, 'start-paused') !== undefined) patch.startPaused = oneOf(values, 'start-paused', ['yes', 'no'] as const, 'no') === 'yes';
  return patch;
}

function printStatus(s: AgentStatus, limitsOnly = false): void {
  const p = s.preferences;
  if (!limitsOnly) {
    console.log(`${s.name}: ${s.state} — ${s.reason}`);
    console.log(`master:      ${s.master.url} (${s.master.connected ? 'connected' : 'not connected'})`);
    console.log(`idle source: ${s.idleSource.name} — ${s.idleSource.why}${s.idleMs !== null ? `; idle ${formatDuration(s.idleMs)}` : ''}`);
    console.log(`executors:   ${s.executors.join(', ')}`);
    for (const b of s.current) console.log(`building:    ${b.builder} (build ${b.buildId})${b.frozen ? ' — frozen' : ''}`);
  }
  console.log(`when:        ${p.when}${p.when === 'idle' ? ` (after ${formatDuration(p.idleAfterMs)} without input)` : ''}`);
  console.log(`schedule:    ${p.weekSchedule ? formatWeekText(p.weekSchedule) || 'any time' : p.schedule ? `${p.schedule.start}-${p.schedule.end}` : 'any time'}; on battery: ${p.onBattery ? 'yes' : 'no'}; other CPU use limit: ${p.maxOtherCpuPercent ?? 'off'}${p.maxOtherCpuPercent ? '%' : ''}`);
  console.log(`while here:  ${p.whileHere === 'freeze' ? 'freeze builds' : `keep going gently (cpus ${p.hereLimits.cpus ?? 'any'}, ${p.hereLimits.cpuPercent ?? 100}% of all CPUs)`}; other CPU grace ${formatDuration(p.otherCpuGraceMs)}; temperature cap ${p.maxTemperatureC !== null ? `${p.maxTemperatureC} °C` : 'off'}${s.temperatureC != null ? ` (now ${Math.round(s.temperatureC)} °C)` : ''}`);
  if (p.startPaused || p.pauseAfterCurrent) console.log(`pausing:     ${[p.startPaused ? 'starts paused after a restart' : '', p.pauseAfterCurrent ? 'pauses once the current build finishes' : ''].filter(Boolean).join('; ')}`);
  console.log(`caps:        cpus ${p.cpus ?? 'all'}, memory ${p.memoryBytes ? formatSize(p.memoryBytes) : 'any'}, disk ${p.diskBytes ? formatSize(p.diskBytes) : 'any'}`);
  if (p.paused) console.log('paused:      yes (crowdbake resume)');
  if (p.snoozeUntil) console.log(`snoozed:     until ${p.snoozeUntil}`);
}
