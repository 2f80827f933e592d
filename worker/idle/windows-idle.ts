import { spawn, type ChildProcess } from 'node:child_process';
import { createInterface } from 'node:readline';
import type { IdleReading, IdleSource } from './idle-source.js';

/**
 * Windows: `GetLastInputInfo` (user32), read by one kept PowerShell process that prints
 * "TICKCOUNT LASTINPUT" (both 32-bit millisecond tick counts) every 100 ms. A drop in idle time
 * is input, reported at once to the governor — so input is seen within 100 ms. It must run in
 * the volunteer's desktop session (GetLastInputInfo is per session: a service sees nothing).
 */
const SCRIPT = [
  "Add-Type -TypeDefinition 'using System; using System.Runtime.InteropServices;",
  'public static class CrowdbakeIdle { [StructLayout(LayoutKind.Sequential)] public struct LII { public uint cbSize; public uint dwTime; }',
  '[DllImport("user32.dll")] static extern bool GetLastInputInfo(ref LII p);',
  'public static string Read() { LII l = new LII(); l.cbSize = (uint)Marshal.SizeOf(l); if (!GetLastInputInfo(ref l)) return "error " + Marshal.GetLastWin32Error();',
  "return unchecked((uint)Environment.TickCount).ToString() + \" \" + l.dwTime.ToString(); } }';",
  'while ($true) { [Console]::Out.WriteLine([CrowdbakeIdle]::Read()); [Console]::Out.Flush(); Start-Sleep -Milliseconds 100 }',
].join(' ');

/** Idle ms from one "TICKCOUNT LASTINPUT" line; both wrap at 2^32 (49.7 days), so subtract modulo 2^32. */
export function parseLastInputLine(line: string): number {
  const m = /^\s*(\d+) (\d+)\s*$/.exec(line);
  if (!m) throw new Error(`GetLastInputInfo: unexpected line "${line.trim().slice(0, 100)}"`);
  const tick = Number(m[1]);
  const last = Number(m[2]);
  if (tick > 0xffffffff || last > 0xffffffff) throw new Error(`GetLastInputInfo: "${line.trim()}" is not two 32-bit tick counts`);
  return (tick - last + 0x1_0000_0000) % 0x1_0000_0000;
}

export class WindowsIdleSource implements IdleSource {
  readonly name = 'windows' as const;
  private last: { idleMs: number; at: number } | null = null;
  private error: string | null = null;
  private readonly listeners = new Set<() => void>();

  private constructor(private readonly child: ChildProcess, readonly why: string) {
    createInterface({ input: child.stdout! }).on('line', (l) => this.line(l));
    child.on('exit', (code) => { this.error = `PowerShell exited (${code})`; });
  }

  static async start(why: string): Promise<{ ok: true; source: WindowsIdleSource } | { ok: false; reason: string }> {
    if (process.platform !== 'win32') return { ok: false, reason: 'not Windows' };
    const child = spawn('powershell.exe', ['-NoProfile', '-NonInteractive', '-Command', SCRIPT], { stdio: ['ignore', 'pipe', 'ignore'], windowsHide: true });
    const src = new WindowsIdleSource(child, why);
    const end = Date.now() + 10_000;
    while (!src.last && !src.error && Date.now() < end) await new Promise((r) => setTimeout(r, 50));
    if (!src.last) { child.kill(); return { ok: false, reason: src.error ?? 'PowerShell printed no GetLastInputInfo reading within 10 s' }; }
    return { ok: true, source: src };
  }

  private line(l: string): void {
    try {
      const idleMs = parseLastInputLine(l);
      const before = this.last?.idleMs;
      this.last = { idleMs, at: Date.now() };
      this.error = null;
      if (before !== undefined && idleMs < before) for (const cb of this.listeners) cb();
    } catch (e) {
      this.error = (e as Error).message;
    }
  }

  async read(): Promise<IdleReading> {
    if (this.error || !this.last) throw new Error(this.error ?? 'no reading yet');
    return { idleMs: this.last.idleMs + (Date.now() - this.last.at), locked: false };
  }

  onInput(callback: () => void): boolean {
    this.listeners.add(callback);
    return true;
  }

  close(): void {
    this.listeners.clear();
    this.child.kill();
  }
}
