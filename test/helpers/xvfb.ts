import { execFileSync, spawn, type ChildProcess } from 'node:child_process';

/** A real X server (Xvfb -noreset, so the idle counter survives clients leaving) for idle tests. */
export async function startXvfb(): Promise<{ display: string; input(): void; close(): void }> {
  for (let attempt = 0; attempt < 5; attempt++) {
    const display = `:${100 + Math.floor(Math.random() * 800)}`;
    const child: ChildProcess = spawn('Xvfb', [display, '-noreset', '-nolisten', 'tcp', '-screen', '0', '320x240x24'], { stdio: 'ignore' });
    for (let i = 0; i < 50; i++) {
      await new Promise((r) => setTimeout(r, 50));
      if (child.exitCode !== null) break;
      try {
        execFileSync('xprintidle', [], { env: { ...process.env, DISPLAY: display }, stdio: 'ignore' });
        let x = 10;
        return {
          display,
          /** Moves the pointer: input, as a person at the desk makes it. */
          input: () => { x = x === 10 ? 20 : 10; execFileSync('xdotool', ['mousemove', String(x), String(x)], { env: { ...process.env, DISPLAY: display } }); },
          close: () => child.kill(),
        };
      } catch { /* not up yet */ }
    }
    child.kill();
  }
  throw new Error('could not start Xvfb');
}
