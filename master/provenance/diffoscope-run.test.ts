import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
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

const HAVE_BWRAP = spawnSync('sh', ['-c', 'command -v bwrap'], { stdio: 'ignore' }).status === 0;

test('in the sandbox, a process standing in for an exploited diffoscope sees none of the master\'s files, no network, no other user, and cannot change the copies', { skip: HAVE_BWRAP ? false : 'bwrap is not installed (apt-get install bubblewrap)' }, async (t) => {
  // The master's data directory, with a secret, outside /tmp (the sandbox's /tmp is its own).
  const data = mkdtempSync(join('/var/tmp', 'crowdbake-master-'));
  writeFileSync(join(data, 'farm.key'), 'THE-FARM-KEY-SECRET\n');
  const dir = pair('a\n', 'b\n');
  t.after(() => { rmSync(dir, { recursive: true, force: true }); rmSync(data, { recursive: true, force: true }); });
  // What runs in diffoscope's place: the sandbox is what stands between hostile bytes and the master.
  writeFileSync(join(dir, 'probe.sh'), [
    '#!/bin/sh',
    `cat ${data}/farm.key 2>&1 || echo "no data dir"`,
    'ls /home /root /var /etc/shadow 2>&1 | head -5',
    'echo "uid $(id -u)"',
    'echo "interfaces: $(tail -n +3 /proc/net/dev | cut -d: -f1 | tr -d " " | tr "\\n" " ")"',
    'echo "programs: $(cat /proc/[0-9]*/comm 2>/dev/null | sort -u | tr "\\n" " ")"',
    '(echo tampered > /work/a/f.txt) 2>&1 || true',
    'echo "env: $(env | cut -d= -f1 | sort | tr "\\n" " ")"',
  ].join('\n'), { mode: 0o755 });
  const r = await runDiffoscope(dir, 'a/f.txt', 'b/f.txt', { timeoutMs: 60_000, maxReportBytes: 65536, memoryBytes: 1024 ** 3 }, '/work/probe.sh');
  assert.equal(r.problem, null, r.stderr);
  assert.ok(!r.report.includes('THE-FARM-KEY-SECRET'), r.report);
  assert.match(r.report, /No such file or directory\nno data dir/);
  assert.match(r.report, /^uid 65534$/m);
  assert.match(r.report, /^interfaces: lo $/m);
  // Only the sandbox's own: bwrap's init, this shell and what it started; no node (the master), no other process of the host.
  const programs = /^programs: (.*)$/m.exec(r.report)?.[1]?.trim().split(' ') ?? [];
  assert.ok(programs.length > 0 && programs.every((p) => ['bwrap', 'sh', 'probe.sh', 'cat', 'sort', 'tr', 'prlimit'].includes(p)), programs.join(','));
  assert.match(r.report, /Read-only file system/);
  assert.equal(readFileSync(join(dir, 'a', 'f.txt'), 'utf8'), 'a\n');
  assert.match(r.report, /^env: HOME LANG LC_ALL PATH PWD TMPDIR $/m);
  assert.match(r.sandbox, /^bwrap/);
});
