import { relative, sep } from 'node:path';
import {
  isAlias, isMap, isScalar, isSeq, LineCounter, parseDocument, visit, type Document, type Node,
} from 'yaml';
import type { z } from 'zod';

/**
 * Shared by every YAML config file the master reads: parse with positions, validate with a
 * zod schema, and turn each problem into `FILE:LINE:COL: key.path: message`.
 */
export interface YamlSource {
  /** The path shown in messages, e.g. `builders/hello.yml`. */
  file: string;
  doc: Document;
  lines: LineCounter;
}

export type YamlRead =
  | { ok: true; source: YamlSource; empty: boolean; data: unknown }
  | { ok: false; errors: string[] };

export type Checked<T> = { ok: true; value: T } | { ok: false; errors: string[] };

type Path = readonly PropertyKey[];

/** The path shown in messages: relative to the config dir when given, with `/` separators. */
export function displayPath(path: string, configDir?: string): string {
  const shown = configDir === undefined ? path : relative(configDir, path);
  return shown.split(sep).join('/');
}

/** Parses one YAML document. Syntax errors, duplicate keys, unknown tags and a top level that is not a mapping are errors. */
export function readYaml(file: string, text: string): YamlRead {
  const lines = new LineCounter();
  const doc = parseDocument(text, { lineCounter: lines, prettyErrors: false, uniqueKeys: true });
  const source: YamlSource = { file, doc, lines };
  const problems = [...doc.errors, ...doc.warnings];
  if (problems.length) {
    return {
      ok: false,
      errors: problems.map((e) => at(source, e.pos[0], e.code === 'DUPLICATE_KEY'
        ? duplicateKey(doc, e.pos[0])
        : `${e.name === 'YAMLParseError' ? 'YAML syntax error' : 'YAML'}: ${e.message}`)),
    };
  }
  const top = doc.contents;
  if (top === null || (isScalar(top) && top.value === null)) return { ok: true, source, empty: true, data: undefined };
  if (!isMap(top)) return { ok: false, errors: [at(source, top.range?.[0] ?? 0, `the top level must be a mapping of "key: value" lines, found ${describeNode(top)}`)] };
  try {
    return { ok: true, source, empty: false, data: doc.toJS({ maxAliasCount: 100 }) };
  } catch (e) {
    return { ok: false, errors: [at(source, 0, `YAML: ${(e as Error).message}`)] };
  }
}

/** Validates `data` against `schema`; every issue names the file, line, column and key path. */
export function checkSchema<S extends z.ZodType>(source: YamlSource, data: unknown, schema: S): Checked<z.output<S>> {
  const r = schema.safeParse(data, { error: issueMessage, reportInput: true });
  if (r.success) return { ok: true, value: r.data };
  const problems = r.error.issues.flatMap((i) => describeIssue(source, schema, i, []));
  problems.sort((a, b) => a.offset - b.offset);
  return { ok: false, errors: problems.map((p) => at(source, p.offset, p.message)) };
}

/** `FILE:LINE:COL: a.b.0: message`, pointing at the key (or list item) at `path`, or the nearest part of it that exists. */
export function errorAt(source: YamlSource, path: Path, message: string): string {
  const p = report(source, path, path, message);
  return at(source, p.offset, p.message);
}

/** Several errorAt messages, in file order. */
export function errorsAt(source: YamlSource, items: readonly { path: Path; message: string }[]): string[] {
  return items.map((i) => report(source, i.path, i.path, i.message))
    .sort((a, b) => a.offset - b.offset)
    .map((p) => at(source, p.offset, p.message));
}

/** The value written at `path`, as the user wrote it (`"0s"`, `0`). */
export function valueAt(source: YamlSource, path: Path): string {
  return describeValue(source.doc.getIn(path as PropertyKey[]));
}

interface Problem { offset: number; message: string }

/** Points at `where` but names `shown` (an unknown key is reported on its own line, under its parent's path). */
function report(source: YamlSource, where: Path, shown: Path, message: string): Problem {
  return { offset: locate(source.doc, where).offset, message: shown.length ? `${shown.map(String).join('.')}: ${message}` : message };
}

function at(source: YamlSource, offset: number, message: string): string {
  const { line, col } = source.lines.linePos(offset);
  return `${source.file}:${line}:${col}: ${message}`;
}

function locate(doc: Document, path: Path): { offset: number; found: boolean } {
  let node: unknown = doc.contents;
  let offset = (node as Node | null)?.range?.[0] ?? 0;
  for (const seg of path) {
    if (isAlias(node)) node = node.resolve(doc);
    if (isMap(node)) {
      const pair = node.items.find((p) => isScalar(p.key) && String(p.key.value) === String(seg));
      if (!pair) return { offset, found: false };
      offset = (pair.key as Node).range?.[0] ?? offset;
      node = pair.value;
    } else if (isSeq(node) && typeof seg === 'number') {
      const item = node.items[seg] as Node | undefined;
      if (!item) return { offset, found: false };
      offset = item.range?.[0] ?? offset;
      node = item;
    } else return { offset, found: false };
  }
  return { offset, found: true };
}

function duplicateKey(doc: Document, offset: number): string {
  let name: string | null = null;
  visit(doc, {
    Pair(_, pair) {
      if (isScalar(pair.key) && pair.key.range?.[0] === offset) name = String(pair.key.value);
    },
  });
  return name === null ? 'duplicate key' : `duplicate key "${name}"`;
}

function describeNode(node: unknown): string {
  if (isSeq(node)) return 'a list';
  if (isMap(node)) return 'a mapping';
  if (isScalar(node)) return describeValue(node.value);
  return 'something else';
}

/** A value as the user wrote it: `"5 minutes"`, `42`, `true`, `a list`. */
export function describeValue(v: unknown): string {
  if (v === undefined) return 'nothing';
  if (v === null) return 'an empty value';
  if (Array.isArray(v)) return 'a list';
  if (typeof v === 'object') return 'a mapping';
  if (typeof v === 'string') return JSON.stringify(v.length > 40 ? `${v.slice(0, 37)}...` : v);
  return String(v);
}

const KIND: Record<string, string> = {
  object: 'a mapping', array: 'a list', string: 'a string', number: 'a number', int: 'a whole number',
  boolean: 'true or false', record: 'a mapping',
};

/** zod error map: messages written for someone editing a YAML file. Schema-level messages still win. */
function issueMessage(iss: z.core.$ZodRawIssue): string | undefined {
  switch (iss.code) {
    case 'invalid_type':
      return iss.input === undefined ? 'required key is missing' : `expected ${KIND[iss.expected] ?? iss.expected}, got ${describeValue(iss.input)}`;
    case 'invalid_value':
      return `expected one of ${iss.values.map((v) => JSON.stringify(v)).join(', ')}, got ${describeValue(iss.input)}`;
    case 'too_small':
      if (iss.origin === 'string' && Number(iss.minimum) === 1) return 'must not be empty';
      if (iss.origin === 'array') return `needs at least ${iss.minimum} item${Number(iss.minimum) === 1 ? '' : 's'}`;
      return `must be ${iss.inclusive ? 'at least' : 'more than'} ${iss.minimum}, got ${describeValue(iss.input)}`;
    case 'too_big':
      if (iss.origin === 'string') return `must be at most ${iss.maximum} characters`;
      if (iss.origin === 'array') return `must have at most ${iss.maximum} items`;
      return `must be ${iss.inclusive ? 'at most' : 'less than'} ${iss.maximum}, got ${describeValue(iss.input)}`;
    default:
      return undefined;
  }
}

function describeIssue(source: YamlSource, schema: z.ZodType, issue: z.core.$ZodIssue, base: Path): Problem[] {
  const path = [...base, ...issue.path];
  if (issue.code === 'unrecognized_keys') {
    const allowed = keysAt(schema, path);
    return issue.keys.map((key) => report(source, [...path, key], path, unknownKey(key, allowed)));
  }
  const absent = path.length > 0 && !locate(source.doc, path).found;
  if ((issue.code === 'invalid_type' || issue.code === 'invalid_union') && absent) {
    return [report(source, path.slice(0, -1), path.slice(0, -1), `missing required key "${String(path[path.length - 1])}"`)];
  }
  if (issue.code === 'invalid_union') {
    // A branch whose type matched (all its issues are deeper down) explains the failure best.
    const deeper = issue.errors.find((branch) => branch.length > 0 && branch.every((i) => i.path.length > 0));
    if (deeper) return deeper.flatMap((i) => describeIssue(source, schema, i, path));
    const expected = [...new Set(issue.errors.flat()
      .flatMap((i) => (i.code === 'invalid_type' && i.path.length === 0 ? [KIND[i.expected] ?? i.expected] : [])))];
    const got = 'input' in issue ? `, got ${describeValue(issue.input)}` : '';
    return [report(source, path, path, expected.length ? `expected ${oneOf(expected)}${got}` : issue.message)];
  }
  return [report(source, path, path, issue.message)];
}

function oneOf(kinds: string[]): string {
  return kinds.length < 2 ? kinds.join('') : `${kinds.slice(0, -1).join(', ')} or ${kinds[kinds.length - 1]}`;
}

function unknownKey(key: string, allowed: string[]): string {
  const near = allowed.find((k) => editDistance(k.toLowerCase(), key.toLowerCase()) <= 2);
  if (near) return `unknown key "${key}" (did you mean "${near}"?)`;
  return allowed.length ? `unknown key "${key}" (allowed: ${allowed.join(', ')})` : `unknown key "${key}"`;
}

interface LooseDef {
  type: string;
  innerType?: z.ZodType;
  in?: z.ZodType;
  shape?: Record<string, z.ZodType>;
  element?: z.ZodType;
  valueType?: z.ZodType;
}

/** The keys a strict object schema allows at `path` (empty when it cannot tell). */
function keysAt(schema: z.ZodType, path: Path): string[] {
  let s: z.ZodType | undefined = schema;
  let i = 0;
  while (s) {
    const def = s._zod.def as unknown as LooseDef;
    if (def.innerType) s = def.innerType;
    else if (def.type === 'pipe') s = def.in;
    else if (i === path.length) return def.shape ? Object.keys(def.shape) : [];
    else if (def.shape) s = def.shape[String(path[i++])];
    else if (def.element) { s = def.element; i++; }
    else if (def.valueType) { s = def.valueType; i++; }
    else return [];
  }
  return [];
}

function editDistance(a: string, b: string): number {
  let prev = Array.from({ length: b.length + 1 }, (_, j) => j);
  for (let i = 1; i <= a.length; i++) {
    const cur = [i];
    for (let j = 1; j <= b.length; j++) {
      cur[j] = Math.min(prev[j]! + 1, cur[j - 1]! + 1, prev[j - 1]! + (a[i - 1] === b[j - 1] ? 0 : 1));
    }
    prev = cur;
  }
  return prev[b.length]!;
}
