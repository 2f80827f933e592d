import { basename } from 'node:path';
import { BuilderFileSchema, toBuilderDefinition, type BuilderDefinition } from '../../protocol/builder-file.js';
import { BuildSpecSchema, NameSchema } from '../../protocol/build-spec.js';
import { checkSchema, displayPath, errorsAt, readYaml, valueAt, type YamlSource } from './yaml-source.js';

/**
 * Reads one builder file, `CONFIG/builders/NAME.yml` (or `.yaml`). Never throws: every
 * problem comes back as `builders/hello.yml:12:5: steps.0.timeout: message`.
 */
export type BuilderFileResult = { ok: true; builder: BuilderDefinition } | { ok: false; errors: string[] };

export interface ParseBuilderFileOptions {
  /** When given, messages show `path` relative to it (`builders/hello.yml`). */
  configDir?: string;
}

const EXTENSION = /\.ya?ml$/;

/** The builder name a file defines (its name without `.yml`/`.yaml`), or null when it is not a builder file. */
export function builderNameFromPath(path: string): string | null {
  const file = basename(path);
  return EXTENSION.test(file) ? file.replace(EXTENSION, '') : null;
}

export function parseBuilderFile(path: string, text: string, options: ParseBuilderFileOptions = {}): BuilderFileResult {
  const file = displayPath(path, options.configDir);
  const errors: string[] = [];
  const name = builderNameFromPath(path);
  if (name === null) {
    errors.push(`${file}: a builder file must be named NAME.yml or NAME.yaml`);
  } else {
    const n = NameSchema.safeParse(name);
    if (!n.success) errors.push(`${file}: builder name "${name}" (from the file name) ${n.error.issues[0]?.message ?? 'is invalid'}`);
  }

  const read = readYaml(file, text);
  if (!read.ok) return { ok: false, errors: [...errors, ...read.errors] };
  if (read.empty) {
    return { ok: false, errors: [...errors, `${file}:1:1: the file is empty; a builder needs at least "steps:" with one step`] };
  }
  const checked = checkSchema(read.source, read.data, BuilderFileSchema);
  if (!checked.ok) return { ok: false, errors: [...errors, ...checked.errors] };
  if (errors.length || name === null) return { ok: false, errors };

  // structuredClone: zod shares default values between parses; definitions must not alias each other.
  const builder = structuredClone(toBuilderDefinition(name, checked.value));
  const specErrors = checkSpec(read.source, builder);
  return specErrors.length ? { ok: false, errors: specErrors } : { ok: true, builder };
}

/** Where a BuildSpec field came from in the file, for fields the loader renames. */
const FILE_KEY: Record<string, string> = { timeoutMs: 'timeout', timeMs: 'time', memoryBytes: 'memory', diskBytes: 'disk' };
const MIN_POLL_MS = 1000;

/**
 * The file schema accepts values the wire schema rejects (`timeout: 0`, `memory: 0`, fractional
 * milliseconds); catch them here, at load time, with a line number, not when a build is dispatched.
 */
function checkSpec(source: YamlSource, builder: BuilderDefinition): string[] {
  const problems: { path: PropertyKey[]; message: string }[] = [];
  const pollMs = builder.source?.pollMs;
  if (pollMs !== undefined && pollMs !== null && pollMs < MIN_POLL_MS) {
    problems.push({ path: ['source', 'poll'], message: `must be at least 1s, got ${valueAt(source, ['source', 'poll'])}` });
  }
  const r = BuildSpecSchema.safeParse({ ...builder.spec, revision: null });
  for (const issue of r.success ? [] : r.error.issues) {
    const last = issue.path[issue.path.length - 1];
    const fileKey = typeof last === 'string' ? FILE_KEY[last] : undefined;
    if (fileKey === undefined) {
      problems.push({ path: issue.path, message: issue.message });
      continue;
    }
    const path = [...issue.path.slice(0, -1), fileKey];
    const unit = fileKey === 'memory' || fileKey === 'disk' ? 'a whole number of bytes, at least 1' : 'a whole number of milliseconds, at least 1ms';
    problems.push({ path, message: `must be ${unit}, got ${valueAt(source, path)}` });
  }
  return errorsAt(source, problems);
}
