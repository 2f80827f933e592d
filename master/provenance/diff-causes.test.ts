import { test } from 'node:test';
import assert from 'node:assert/strict';
import { classifyDiff } from './diff-causes.js';

// Reports as diffoscope 240 (Debian 12) writes them with --text.
const TEXT = `--- a/out.txt
+++ b/out.txt
@@ -1,2 +1,2 @@
 hello
-built on 2026-12-03 07:50:01.123456789
+built on 2026-12-03 07:50:02.987654321
`;
const TARGZ = `--- a/x.tar.gz
+++ b/x.tar.gz
├── filetype from file(1)
│ @@ -1 +1 @@
│ -gzip compressed data, was "x.tar", last modified: Thu Dec  3 07:44:41 2026, from Unix
│ +gzip compressed data, was "x.tar", last modified: Thu Dec  3 07:44:42 2026, from Unix
│   --- a.tar
├── +++ b.tar
│ ├── file list
│ │ @@ -1,2 +1,2 @@
│ │  drwxr-xr-x   0 root         (0) root         (0)        0 2026-12-03 07:44:41.000000 x/
│ │ --rw-r--r--   0 root         (0) root         (0)        3 2026-12-03 07:44:41.000000 x/f
│ │ +-rw-r--r--   0 root         (0) root         (0)        3 2026-12-03 07:44:42.000000 x/f
`;

test('classifyDiff names timestamps in a text file and in a tar.gz (gzip header and tar mtimes)', () => {
  const t = classifyDiff(TEXT);
  assert.deepEqual(t.map((c) => c.cause), ['timestamps']);
  assert.equal(t[0]!.removed, 'built on 2026-12-03 07:50:01.123456789');
  const g = classifyDiff(TARGZ);
  assert.deepEqual(g.map((c) => [c.cause, c.count]), [['timestamps', 2]]);
});

test('classifyDiff names file order, build paths, locale, uname and modes, and leaves a real change unexplained', () => {
  const hunk = (a: string[], b: string[]) => `--- a\n+++ b\n@@ -1 +1 @@\n${a.map((l) => `-${l}`).join('\n')}\n${b.map((l) => `+${l}`).join('\n')}\n`;
  assert.deepEqual(classifyDiff(hunk(['b.o', 'a.o', 'c.o'], ['a.o', 'b.o', 'c.o'])).map((c) => c.cause), ['file-order']);
  assert.deepEqual(classifyDiff(hunk(['DW_AT_comp_dir: /build/abc/src'], ['DW_AT_comp_dir: /build/xyz/src'])).map((c) => c.cause), ['build-paths']);
  assert.deepEqual(classifyDiff(hunk(['locale: de_DE.UTF-8'], ['locale: en_US.UTF-8'])).map((c) => c.cause), ['locale']);
  assert.deepEqual(classifyDiff(hunk(['built on Linux 6.1.0-18-amd64'], ['built on Linux 6.5.0-1-amd64'])).map((c) => c.cause), ['uname']);
  assert.deepEqual(classifyDiff(hunk(['-rw-r--r-- 0 root 3 x/f'], ['-rw-rw-r-- 0 root 3 x/f'])).map((c) => c.cause), ['file-modes']);
  assert.deepEqual(classifyDiff(hunk(['return 1;'], ['return 2;'])), []);
});
