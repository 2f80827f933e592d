import { execFile } from 'node:child_process';
import type { IdleReading, IdleSource } from './idle-source.js';

/**
 * macOS: `HIDIdleTime` of the IOHIDSystem registry entry (nanoseconds since the last keyboard,
 * mouse or trackpad input), read with `ioreg`. There is no input event to wait on without a
 * native module, so the agent polls (every 250 ms while builds run).
 */
export class MacosIdleSource implements IdleSource {
  readonly name = 'macos' as const;
  constructor(readonly why: string) {}

  static async probe(): Promise<{ ok: true } | { ok: false; reason: string }> {
    if (process.platform !== 'darwin') return { ok: false, reason: 'not macOS' };
    try {
      await ioregIdleMs();
      return { ok: true };
    } catch (e) {
      return { ok: false, reason: (e as Error).message };
    }
  }

  async read(): Promise<IdleReading> {
    return { idleMs: await ioregIdleMs(), locked: false };
  }

  onInput(): boolean {
    return false;
  }

  close(): void {}
}

/**
 * Milliseconds idle from `ioreg -c IOHIDSystem -r -d 1 -k HIDIdleTime` output, where the line
 * reads `"HIDIdleTime" = 1234567890` (ns) or, on some versions, `"HIDIdleTime" = <d2029649000000>`
 * (the same number as little-endian bytes). Throws on anything else.
 */
export function parseHidIdleTime(out: string): number {
  const m = /"HIDIdleTime"\s*=\s*(?:(\d+)|<([0-9a-fA-F]+)>)/.exec(out);
  if (!m) throw new Error(`ioreg printed no HIDIdleTime: ${out.trim().slice(0, 200) || '(nothing)'}`);
  let ns: bigint;
  if (m[1] !== undefined) ns = BigInt(m[1]);
  else {
    const hex = m[2]!;
    if (hex.length % 2 !== 0 || hex.length > 16) throw new Error(`ioreg: HIDIdleTime <${hex}> is not a 64-bit number`);
    ns = 0n;
    for (let i = hex.length - 2; i >= 0; i -= 2) ns = (ns << 8n) | BigInt(parseInt(hex.slice(i, i + 2), 16));
  }
  return Number(ns / 1_000_000n);
}

function ioregIdleMs(): Promise<number> {
  return new Promise((ok, fail) => {
    execFile('ioreg', ['-c', 'IOHIDSystem', '-r', '-d', '1', '-k', 'HIDIdleTime'], { timeout: 2000 }, (err, stdout) => {
      if (err) { fail(new Error(`ioreg: ${err.message.trim()}`)); return; }
      try { ok(parseHidIdleTime(stdout)); } catch (e) { fail(e as Error); }
    });
  });
}
