import * as z from 'zod';

/**
 * [provenance] The diagnosis of replicas that disagree: a diffoscope report of a pair of
 * differing artifacts, run on the master (master/provenance/diffoscope.ts), and the usual
 * causes it shows (master/provenance/diff-causes.ts).
 */

/** The usual causes of unreproducible bytes that a diffoscope report is checked for. */
export const DIFF_CAUSES = ['timestamps', 'file-order', 'build-paths', 'locale', 'uname', 'file-modes'] as const;
export const DiffCauseSchema = z.enum(DIFF_CAUSES);
export type DiffCause = z.infer<typeof DiffCauseSchema>;

/** What each cause means, in a sentence for the build page. */
export const DIFF_CAUSE_TEXT: Record<DiffCause, string> = {
  timestamps: 'embedded timestamps (build dates, file mtimes): set SOURCE_DATE_EPOCH, clamp mtimes',
  'file-order': 'file or entry order (readdir order differs between machines): sort the inputs',
  'build-paths': 'build paths (the build directory is embedded): use -ffile-prefix-map or a fixed path',
  locale: 'locale (language, sort order or number format differs): set LC_ALL=C.UTF-8',
  uname: 'the build host (kernel release, host name, CPU): do not embed uname output',
  'file-modes': 'file permissions (umask differs): set modes explicitly',
};

/** `GET /api/v1/builds/{id}/diffoscope`: the diagnosis of the build's disagreeing replica group. */
export const DiffoscopeReportSchema = z.strictObject({
  group: z.number().int().positive().nullable(),
  /** none: no disagreement to diagnose; unavailable: diffoscope is not installed on the master. */
  state: z.enum(['none', 'running', 'done', 'failed', 'unavailable', 'skipped']),
  message: z.string(),
  artifact: z.string().nullable(),
  builds: z.array(z.number().int().positive()).max(2),
  workers: z.array(z.string()).max(2),
  sha256: z.array(z.string()).max(2),
  causes: z.array(z.strictObject({ cause: DiffCauseSchema, count: z.number().int().nonnegative(), removed: z.string(), added: z.string() })),
  report: z.string(),
  truncated: z.boolean(),
  sandbox: z.string(),
  startedAt: z.string().nullable(),
  finishedAt: z.string().nullable(),
});
export type DiffoscopeReport = z.infer<typeof DiffoscopeReportSchema>;
