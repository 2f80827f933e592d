import { spawn } from 'node:child_process';

export interface ToolResult {
  code: number | null;
  stdout: Buffer;
  stderr: string;
}

export interface ToolOptions {
  cwd?: string;
  timeoutMs?: number;
  /** Resolve with the result instead of rejecting on a non-zero exit. */
  allowFailure?: boolean;
  /** What to install when the command is missing, e.g. "apt-get install dpkg". */
  installHint?: string;
}

/** Runs a host tool to completion; rejects with a sentence naming the tool and what went wrong. */
export function runTool(cmd: string, args: string[], options: ToolOptions = {}): Promise<ToolResult> {
  return new Promise((resolve, reject) => {
    const child = spawn(cmd, args, {
      cwd: options.cwd, stdio: ['ignore', 'pipe', 'pipe'], env: { ...process.env, LC_ALL: 'C' },
      ...(options.timeoutMs ? { timeout: options.timeoutMs, killSignal: 'SIGKILL' as const } : {}),
    });
    const out: Buffer[] = [];
    let err = '';
    child.stdout.on('data', (c: Buffer) => out.push(c));
    child.stderr.on('data', (c: Buffer) => { if (err.length < 64 * 1024) err += c.toString(); });
    child.on('error', (e: NodeJS.ErrnoException) => {
      reject(new Error(e.code === 'ENOENT'
        ? `${cmd} is not installed${options.installHint ? ` (${options.installHint})` : ''}`
        : `could not run ${cmd}: ${e.message}`));
    });
    child.on('close', (code, signal) => {
      const r = { code, stdout: Buffer.concat(out), stderr: err };
      if (code === 0 || options.allowFailure) return resolve(r);
      const why = signal ? `was killed by ${signal}${options.timeoutMs ? ' (time limit)' : ''}` : `exited with ${code}`;
      const detail = lastLines(err, 3);
      reject(new Error(`${cmd} ${args.slice(0, 3).join(' ')} ${why}${detail ? `: ${detail}` : ''}`));
    });
  });
}

/** The last few non-empty lines of a text, joined with " | ": for error sentences. */
export function lastLines(text: string, n: number): string {
  return text.split('\n').map((l) => l.trim()).filter(Boolean).slice(-n).join(' | ');
}
