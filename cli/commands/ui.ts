import { spawn } from 'node:child_process';
import { ControlClient } from '../control-client.js';
import { parse, str } from '../args.js';
import { defaultDataDir } from '../paths.js';

const HELP = `usage: crowdbake ui [--data DIR] [--no-open]

Opens this machine's volunteer pages (state and live log, limits, history, logs) in the
browser. The local agent serves them on 127.0.0.1; this asks it for a sign-in link that works
once, within a minute, and opens it. The browser then holds an HttpOnly session cookie for
that agent until it restarts.
  --no-open    print the link instead of opening a browser
  --data DIR   the worker's data directory (default: ${defaultDataDir('worker')})
`;

/** The command that opens a URL in the desktop's browser. */
export function openerFor(platform: NodeJS.Platform, url: string): [string, string[]] {
  if (platform === 'darwin') return ['open', [url]];
  if (platform === 'win32') return ['cmd', ['/c', 'start', '""', url]];
  return ['xdg-open', [url]];
}

export async function uiCommand(argv: string[]): Promise<number> {
  const { values } = parse(argv, { data: { type: 'string' }, 'no-open': { type: 'boolean' } });
  if (values.help) { process.stdout.write(HELP); return 0; }
  const opened = ControlClient.open(str(values, 'data') ?? defaultDataDir('worker'));
  if ('offline' in opened) {
    console.error(`crowdbake ui: ${opened.offline}; start \`crowdbake worker\` first`);
    return 1;
  }
  const { url } = await opened.client.call<{ url: string }>('POST', '/ui-tickets', {});
  if (values['no-open']) {
    console.log(url);
    return 0;
  }
  const [cmd, args] = openerFor(process.platform, url);
  const ok = await new Promise<boolean>((done) => {
    const child = spawn(cmd, args, { stdio: 'ignore', detached: true });
    child.once('error', () => done(false));
    child.once('spawn', () => { child.unref(); done(true); });
  });
  if (!ok) {
    console.error(`crowdbake ui: could not start ${cmd}; open this link (it works once, within a minute):`);
    console.log(url);
    return 1;
  }
  console.log('opened the volunteer pages in the browser');
  return 0;
}
