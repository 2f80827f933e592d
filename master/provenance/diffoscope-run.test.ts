import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { runDiffoscope } from './diffoscope-run.js';

// Real diffoscope (Debian's diffoscope-minimal) on bytes a hostile worker could send: its
// report is cut at the cap and the process stopped, and a run past its time limit is killed.
const HAVE = spawnSync('sh', ['-c', 'command -v diffoscope'], { stdio: 'ignore' }).status === 0;
const skip = HAVE ? false : 'diffoscope is not installed (apt-get install diffoscope-minimal)';

function pair(a: string, b: string): string {
  const dir = mkdtempSync(join(tmpdir(), 'crowdbake-diffo-'));
  for (const [d, text] of [['a', a], ['b', b]] as const) { mkdirSync(join(dir, d)); writeFileSync(join(dir, d, 'f.txt'), text); }
  return dir;
}

test('a report larger than the cap is cut there and diffoscope is stopped', { skip }, async (t) => {
  const lines = (tag: string) => Array.from({ length: 40_000 }, (_, i) => `${tag} line ${i}`).join('\n');
  const dir = pair(lines('left'), lines('right'));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  const r = await runDiffoscope(dir, 'a/f.txt', 'b/f.txt', { timeoutMs: 120_000, maxReportBytes: 8192, memoryBytes: 4 * 1024 ** 3 });
  assert.equal(r.truncated, true);
  assert.ok(Buffer.byteLength(r.report) <= 8192, `the report kept ${Buffer.byteLength(r.report)} bytes`);
  assert.match(r.report, /^--- a\/f\.txt/);
});

test('a run past its time limit is killed and says so', { skip }, async (t) => {
  const dir = pair('a\n', 'b\n');
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  const r = await runDiffoscope(dir, 'a/f.txt', 'b/f.txt', { timeoutMs: 1, maxReportBytes: 8192, memoryBytes: 4 * 1024 ** 3 });
  assert.match(r.problem ?? '', /diffoscope did not finish within 1 ms; it was stopped/);
});
