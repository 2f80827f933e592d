import type { z } from 'zod';

export type Decoded<T> = { ok: true; value: T } | { ok: false; error: string };

/** One line per problem, each naming the field: `steps.0.run: expected string`. */
export function describeIssues(error: z.ZodError): string {
  return error.issues
    .map((i) => `${i.path.length ? i.path.join('.') : '(top level)'}: ${i.message}`)
    .join('; ');
}

/** Parses JSON text and validates it; never throws. */
export function decodeJson<T>(schema: z.ZodType<T>, text: string, maxBytes: number): Decoded<T> {
  if (text.length > maxBytes) return { ok: false, error: `frame of ${text.length} bytes exceeds the limit of ${maxBytes}` };
  let raw: unknown;
  try {
    raw = JSON.parse(text);
  } catch (e) {
    return { ok: false, error: `not JSON: ${(e as Error).message}` };
  }
  const r = schema.safeParse(raw);
  return r.success ? { ok: true, value: r.data } : { ok: false, error: describeIssues(r.error) };
}
