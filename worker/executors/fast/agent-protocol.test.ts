import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { describe, test } from 'node:test';
import { shellQuote, stepCode } from './agent-protocol.js';

// Runs the generated code the way the agent does (NL defined, one line, eval) in the host's
// /bin/sh and in busybox's, printing each argument NUL-terminated.
function evalLikeAgent(shell: string[], code: string): string {
  assert.ok(!code.includes('\n'), 'a step must be one line');
  const script = `NL='\n'\ncd() { :; }\neval "$1"`;
  return execFileSync(shell[0]!, [...shell.slice(1), '-c', script, 'sh', code], { encoding: 'latin1' });
}

const TRICKY = ["it's", 'two\nlines', '$HOME `id` $(id) "q" \\ \\n', ' lead and trail ', '', '*', '-n', 'ünï', '\t\r'];

describe('agent protocol', () => {
  for (const shell of [['/bin/sh'], ['/bin/busybox', 'sh']]) {
    test(`argv and env survive quoting exactly (${shell.join(' ')})`, () => {
      const argv = ['/bin/busybox', 'sh', '-c', 'for a in "$@"; do printf "%s\\0" "$a"; done; printf "%s\\0" "$V"', 'x', ...TRICKY];
      const out = evalLikeAgent(shell, stepCode(argv, { V: TRICKY.join('|') }));
      assert.deepEqual(out.split('\0').slice(0, -1), [...TRICKY, TRICKY.join('|')].map((s) => Buffer.from(s).toString('latin1')));
    });
  }

  test('one line, no NUL, valid names, non-empty', () => {
    assert.equal(shellQuote("a'b"), "'a'\\''b'");
    assert.equal(shellQuote('a\nb'), "'a'\"$NL\"'b'");
    assert.throws(() => stepCode([], {}), /empty command/);
    assert.throws(() => stepCode(['x\0y'], {}), /NUL/);
    assert.throws(() => stepCode(['true'], { 'A-B': '1' }), /not a valid environment variable name/);
    assert.match(stepCode(['true'], { A: '1' }), /^cd \/work \|\| exit 126; export A='1'; exec 'true'$/);
  });
});
