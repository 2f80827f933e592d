import { spawn, spawnSync } from 'node:child_process';

export interface RunLimits {
  timeoutMs: number;
  /** Bytes of report kept; diffoscope is told the same and stopped past it. */
  maxReportBytes: number;
  /** Address space of the diffoscope process (prlimit --as). */
  memoryBytes: number;
}

export interface RunOutcome {
  report: string;
  truncated: boolean;
  exitCode: number | null;
  /** Why it did not give a report (timeout, a crash), or null. */
  problem: string | null;
  stderr: string;
  sandbox: string;
}

const found = (cmd: string) => spawnSync('sh', ['-c', `command -v ${cmd}`], { stdio: 'ignore' }).status === 0;

/** Whether diffoscope is installed on the master (Debian: diffoscope-minimal or diffoscope). */
export function diffoscopeAvailable(command = 'diffoscope'): boolean {
  return found(command);
}

const CLEAN_ENV = { PATH: '/usr/bin:/bin', LC_ALL: 'C.UTF-8', LANG: 'C.UTF-8', HOME: '/tmp', TMPDIR: '/tmp' };

/**
 * Runs `diffoscope --text - a/NAME b/NAME` in `workDir` (a fresh temp dir holding copies of
 * the two artifacts). The bytes are a worker's, so diffoscope runs confined: with bwrap when
 * it is installed (no network, no other process, uid 65534, only /usr, the loader cache and
 * the two files visible, read-only; nothing of the master's data directory or /etc), under
 * a memory cap (prlimit), a clean environment, a wall-clock limit (the process group is
 * killed) and a cap on the report it may write. Without bwrap the same limits apply
 * outside a sandbox, and `sandbox` says so.
 */
export function runDiffoscope(workDir: string, a: string, b: string, limits: RunLimits, command = 'diffoscope'): Promise<RunOutcome> {
  const inner = ['prlimit', `--as=${limits.memoryBytes}`, '--', command, '--text', '-', '--no-progress', '--text-color', 'never',
    '--max-text-report-size', String(limits.maxReportBytes), '--timeout', String(Math.max(1, Math.floor(limits.timeoutMs / 2000))), a, b];
  const bwrap = found('bwrap');
  const argv = bwrap ? [
    'bwrap', '--unshare-all', '--die-with-parent', '--new-session', '--uid', '65534', '--gid', '65534',
    '--ro-bind', '/usr', '/usr', '--symlink', 'usr/bin', '/bin', '--symlink', 'usr/lib', '/lib', '--symlink', 'usr/lib64', '/lib64', '--symlink', 'usr/sbin', '/sbin',
    '--ro-bind-try', '/etc/ld.so.cache', '/etc/ld.so.cache', '--ro-bind-try', '/etc/magic', '/etc/magic', '--ro-bind-try', '/etc/alternatives', '/etc/alternatives',
    '--proc', '/proc', '--dev', '/dev', '--size', String(limits.memoryBytes), '--tmpfs', '/tmp', '--ro-bind', workDir, '/work', '--chdir', '/work', '--clearenv',
    ...Object.entries(CLEAN_ENV).flatMap(([k, v]) => ['--setenv', k, v]), ...inner,
  ] : inner;
  const sandbox = bwrap ? 'bwrap (no network, uid 65534, only /usr and the two files, read-only)' : 'none (bwrap is not installed): a clean environment and a temp dir only';
  return new Promise((done) => {
    const child = spawn(argv[0]!, argv.slice(1), { cwd: workDir, env: CLEAN_ENV, stdio: ['ignore', 'pipe', 'pipe'], detached: true });
    const out: Buffer[] = [];
    let size = 0;
    let truncated = false;
    let stderr = '';
    let problem: string | null = null;
    const kill = () => { try { process.kill(-child.pid!, 'SIGKILL'); } catch { /* gone already */ } };
    const timer = setTimeout(() => { problem = `diffoscope did not finish within ${limits.timeoutMs < 1000 ? `${limits.timeoutMs} ms` : `${Math.round(limits.timeoutMs / 1000)} s`}; it was stopped`; kill(); }, limits.timeoutMs);
    timer.unref();
    child.stdout.on('data', (c: Buffer) => {
      if (truncated) return;
      if (size + c.length > limits.maxReportBytes) {
        out.push(c.subarray(0, limits.maxReportBytes - size));
        truncated = true;
        kill();
        return;
      }
      out.push(c);
      size += c.length;
    });
    child.stderr.on('data', (c: Buffer) => { if (stderr.length < 4000) stderr += c.toString(); });
    child.on('error', (e) => { problem = `cannot run ${argv[0]}: ${e.message}`; });
    child.on('close', (code) => {
      clearTimeout(timer);
      // diffoscope exits 1 when the files differ, 0 when they do not; anything else is a failure.
      if (!problem && !truncated && code !== 0 && code !== 1) problem = `diffoscope exited with ${code ?? 'a signal'}: ${stderr.trim().split('\n').slice(-3).join(' ').slice(0, 500)}`;
      done({ report: Buffer.concat(out).toString('utf8'), truncated, exitCode: code, problem, stderr, sandbox });
    });
  });
}
