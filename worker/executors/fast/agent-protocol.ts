import { randomBytes } from 'node:crypto';

/**
 * The in-container agent of the fast container path, and how steps are written for it.
 *
 * The container's main process (under podman's --init) is `/bin/sh -c AGENT_SCRIPT`, started
 * with `podman run -d --preserve-fds 4`: fds 3-6 are socketpairs to the worker (3 commands in,
 * 4 status out, 5 step stdout, 6 step stderr). Each step is one line, `<marker> <shell code>`;
 * the agent runs the code in a subshell (which `exec`s the step's command, so it inherits the
 * container's namespaces, cgroups, capabilities, seccomp and no_new_privs, exactly like
 * `podman exec`), then writes the marker to stdout and stderr — so the worker knows where the
 * step's output ends — and `exit <marker> <status>` to fd 4.
 *
 * The step's own fds 3-6 are closed. A build can still find the agent's sockets through /proc
 * (it is root in its own container) and forge its own markers or status lines; that only lies
 * about its own build, which it could do anyway by exiting 0.
 */
export const AGENT_FDS = 4;

const ENV_NAME = /^[A-Za-z_][A-Za-z0-9_]*$/;

export const AGENT_SCRIPT = [
  "NL='",
  "'",
  "printf 'ready\\n' >&4 || exit 1",
  'while IFS= read -r l <&3; do',
  '  m=${l%% *}',
  '  ( eval "${l#* }" ) </dev/null >&5 2>&6 3<&- 4<&- 5>&- 6>&-',
  '  c=$?',
  "  printf '\\036CROWDBAKE-%s\\036' \"$m\" >&5",
  "  printf '\\036CROWDBAKE-%s\\036' \"$m\" >&6",
  "  printf 'exit %s %s\\n' \"$m\" \"$c\" >&4",
  'done',
  // The worker is gone (its end of fd 3 closed): keep the container, like the old `sleep`
  // placeholder, so the next worker start finds and removes it.
  'exec sleep 2147483647',
].join('\n');

/** A fresh random marker id (hex), and the bytes the agent writes for it. */
export function newMarker(): { id: string; bytes: Buffer } {
  const id = randomBytes(16).toString('hex');
  return { id, bytes: Buffer.from(`\x1eCROWDBAKE-${id}\x1e`, 'latin1') };
}

/** Single-quotes a word for sh; newlines become "$NL" (the agent defines it) so the step stays one line. */
export function shellQuote(word: string): string {
  return `'${word.replace(/'/g, () => "'\\''").replace(/\n/g, () => '\'"$NL"\'')}'`;
}

/**
 * The shell code for one step: cd to `cwd` (/work, or /build/src for a build with a build
 * directory), export its env, exec its argv. Throws on what a command line cannot carry (NUL
 * bytes) or an empty command.
 */
export function stepCode(argv: readonly string[], env: Record<string, string>, cwd = '/work'): string {
  if (argv.length === 0) throw new Error('the step has an empty command');
  for (const key of Object.keys(env)) {
    if (!ENV_NAME.test(key)) throw new Error(`"${key}" is not a valid environment variable name`);
  }
  for (const s of [...argv, ...Object.values(env)]) {
    if (s.includes('\0')) throw new Error('the step\'s command or environment contains a NUL byte');
  }
  const exports = Object.entries(env).map(([k, v]) => `${k}=${shellQuote(v)}`);
  return [
    `cd ${/^[A-Za-z0-9/_.-]+$/.test(cwd) ? cwd : shellQuote(cwd)} || exit 126`,
    ...(exports.length > 0 ? [`export ${exports.join(' ')}`] : []),
    `exec ${argv.map(shellQuote).join(' ')}`,
  ].join('; ');
}
