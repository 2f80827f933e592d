import { readFileSync } from 'node:fs';
import { parseArgs, type ParseArgsConfig } from 'node:util';
import { parseDuration, parseSize } from '../protocol/units.js';

/** A bad flag or value: the CLI prints the message and exits 2. */
export class UsageError extends Error {}

type Options = NonNullable<ParseArgsConfig['options']>;

export function parse(argv: string[], options: Options, allowPositionals = 0) {
  let r;
  try {
    r = parseArgs({ args: argv, options: { ...options, help: { type: 'boolean', short: 'h' } }, allowPositionals: true, strict: true });
  } catch (e) {
    throw new UsageError((e as Error).message.replace(/^Unknown option/, 'unknown flag').split('. To specify')[0]!);
  }
  if (r.positionals.length > allowPositionals) throw new UsageError(`unexpected argument "${r.positionals[allowPositionals]}"`);
  return { values: r.values as Record<string, string | boolean | undefined>, positionals: r.positionals };
}

export function str(values: Record<string, unknown>, name: string): string | undefined {
  const v = values[name];
  return typeof v === 'string' ? v : undefined;
}

export function required(values: Record<string, unknown>, name: string): string {
  const v = str(values, name);
  if (v === undefined || v === '') throw new UsageError(`--${name} is required`);
  return v;
}

export function positiveNumber(values: Record<string, unknown>, name: string): number | undefined {
  const v = str(values, name);
  if (v === undefined) return undefined;
  const n = Number(v);
  if (!Number.isFinite(n) || n <= 0) throw new UsageError(`--${name} "${v}" is not a positive number`);
  return n;
}

export function size(values: Record<string, unknown>, name: string): number | undefined {
  const v = str(values, name);
  if (v === undefined) return undefined;
  const r = parseSize(v);
  if (typeof r === 'string') throw new UsageError(`--${name}: ${r}`);
  return r;
}

export function duration(values: Record<string, unknown>, name: string): number | undefined {
  const v = str(values, name);
  if (v === undefined) return undefined;
  const r = parseDuration(v);
  if (typeof r === 'string') throw new UsageError(`--${name}: ${r}`);
  return r;
}

export function oneOf<T extends string>(values: Record<string, unknown>, name: string, allowed: readonly T[], dflt: T): T {
  const v = str(values, name) ?? dflt;
  if (!(allowed as readonly string[]).includes(v)) throw new UsageError(`--${name} "${v}" must be one of ${allowed.join(', ')}`);
  return v as T;
}

export function list(values: Record<string, unknown>, name: string): string[] {
  const v = str(values, name);
  return v ? v.split(',').map((s) => s.trim()).filter(Boolean) : [];
}

export function port(values: Record<string, unknown>, name: string): number | undefined {
  const v = str(values, name);
  if (v === undefined) return undefined;
  const n = Number(v);
  if (!Number.isInteger(n) || n < 0 || n > 65535) throw new UsageError(`--${name} "${v}" is not a port number (0-65535)`);
  return n;
}

export function hostPort(value: string, flag: string): { host: string; port: number } {
  const i = value.lastIndexOf(':');
  const host = value.slice(0, i).replace(/^\[|\]$/g, '');
  const p = Number(value.slice(i + 1));
  if (i <= 0 || !host || !Number.isInteger(p) || p < 0 || p > 65535) throw new UsageError(`--${flag} "${value}" must be HOST:PORT`);
  return { host, port: p };
}

/**
 * A secret given as `--NAME VALUE` (visible to every local user in /proc/PID/cmdline and `ps`:
 * see warnSecretOnCommandLine), `--NAME-file FILE` (its first line), or the environment
 * variable `envName`. Undefined when none is given.
 */
export function secret(values: Record<string, unknown>, name: string, envName: string, env: NodeJS.ProcessEnv = process.env): string | undefined {
  const inline = str(values, name);
  const file = str(values, `${name}-file`);
  const fromEnv = env[envName]?.trim();
  // Not inherited by what this process starts (build sandboxes, helpers).
  delete env[envName];
  if (inline !== undefined && file !== undefined) throw new UsageError(`give --${name} or --${name}-file, not both`);
  if (file !== undefined) {
    let text: string;
    try {
      text = readFileSync(file, 'utf8');
    } catch (e) {
      throw new UsageError(`--${name}-file ${file}: cannot read it: ${(e as NodeJS.ErrnoException).code ?? (e as Error).message}`);
    }
    const v = text.split('\n')[0]!.trim();
    if (!v) throw new UsageError(`--${name}-file ${file} is empty: expected the ${name} on its first line`);
    return v;
  }
  if (inline !== undefined) {
    if (inline === '') throw new UsageError(`--${name} is empty`);
    return inline;
  }
  return fromEnv ? fromEnv : undefined;
}

/** Once the flags are known good: warns when `--NAME` carried a secret on the command line. */
export function warnSecretOnCommandLine(values: Record<string, unknown>, name: string, envName: string): void {
  if (str(values, name) === undefined) return;
  process.stderr.write(`crowdbake: warning: --${name} on the command line is visible to other users of this computer (ps, /proc); use --${name}-file FILE or $${envName} instead\n`);
}
