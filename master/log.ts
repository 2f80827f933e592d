import { pino, type Logger } from 'pino';

/**
 * The master's own log, on stderr. `plain` (the default): one line a message,
 * "crowdbake master: …", as people read it. `json` (`crowdbake master --log-format json`):
 * one JSON object a line through pino — `level` (30 info, 40 warn, 50 error), `time` (ms
 * since the epoch), `msg`, and for errors `err` with its stack — as log collectors read it.
 */
export type LogFormat = 'plain' | 'json';
export const LOG_FORMATS: readonly LogFormat[] = ['plain', 'json'];

let json: Logger | null = null;

export function setLogFormat(format: LogFormat): void {
  json = format === 'json' ? pino({ base: { name: 'crowdbake-master' } }, pino.destination({ fd: 2, sync: true })) : null;
}

function write(level: 'info' | 'warn' | 'error', msg: string, err?: unknown): void {
  if (json) {
    if (err instanceof Error) json[level]({ err }, msg);
    else if (err !== undefined) json[level]({ detail: String(err) }, msg);
    else json[level](msg);
    return;
  }
  if (err !== undefined) console.error(`crowdbake master: ${msg}`, err);
  else console.error(`crowdbake master: ${msg}`);
}

export const log = {
  info: (msg: string): void => write('info', msg),
  warn: (msg: string): void => write('warn', msg),
  /** `err` (an Error, with its stack) after the message, as console.error printed it. */
  error: (msg: string, err?: unknown): void => write('error', msg, err),
};

/** A `(line) => void` sink for modules that take one (provisioners, sources, retention). */
export const logLine = (line: string): void => log.info(line);
