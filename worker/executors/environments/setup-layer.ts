import { randomBytes } from 'node:crypto';
import { CREATE_FLAGS, podman } from '../podman.js';
import { ENV_LABEL, KEY_LABEL } from './keys.js';
import { runLines } from './run-lines.js';
import type { Progress } from './shared-build.js';

/**
 * One setup line: `podman run` it under /bin/sh -c in a container from the previous layer,
 * with the executor's runtime flags and WITH the network (setup installs packages), then
 * `podman commit` the container as the next layer. The container is removed in every case;
 * a failing line commits nothing.
 *
 * Unlike build steps, setup runs with podman's default capabilities (package scripts call
 * chroot, setcap, chown) but still with no-new-privileges, and without memory or CPU limits.
 */

export interface SetupLayerRequest {
  parent: string;
  tag: string;
  key: string;
  line: string;
  /** "setup 2/3", for messages. */
  label: string;
  /** Labels for the container ("crowdbake.owner=ID", so cleanupStale() removes a leftover one). */
  containerLabels: readonly string[];
  timeoutMs: number;
}

export async function buildSetupLayer(r: SetupLayerRequest, progress: Progress): Promise<void> {
  const name = `crowdbake-setup-${r.key.slice(0, 12)}-${randomBytes(4).toString('hex')}`;
  const restore = await entrypointChanges(r.parent);
  const args = [
    'run', ...CREATE_FLAGS, '--pull', 'never', '--name', name,
    ...r.containerLabels.flatMap((l) => ['--label', l]),
    '--security-opt', 'no-new-privileges',
    // Keep podman's own variables out of the committed image.
    '--unsetenv', 'TERM', '--unsetenv', 'container',
    '--entrypoint', '/bin/sh', r.parent, '-c', r.line,
  ];
  try {
    const result = await runLines('podman', args, {
      onLine: progress, timeoutMs: r.timeoutMs,
      onTimeout: async () => { await podman(['kill', '--signal', 'KILL', name], { allowFailure: true, timeoutMs: 30_000 }); },
    });
    if (result.timedOut) {
      throw new Error(`${r.label} ${JSON.stringify(r.line)} did not finish within ${Math.round(r.timeoutMs / 1000)} s; nothing was cached for it`);
    }
    if (result.code !== 0) {
      const podmanError = result.code === 125 ? `: ${result.tail.filter((l) => l.startsWith('Error: ')).join('; ') || 'podman failed'}` : '';
      throw new Error(`${r.label} ${JSON.stringify(r.line)} failed with exit code ${result.code ?? 'none'}${podmanError}; nothing was cached for it`);
    }
    // The container's labels would end up on the image (and on every sandbox made from it): blank them.
    const blank = r.containerLabels.flatMap((l) => ['--change', `LABEL ${l.split('=')[0]!}=""`]);
    await podman(['commit', '--quiet', ...restore, ...blank,
      '--change', `LABEL ${ENV_LABEL}=1`, '--change', `LABEL ${KEY_LABEL}=${r.key}`, name, r.tag], { timeoutMs: 30 * 60_000 });
  } finally {
    await podman(['rm', '--force', '--time', '0', name], { allowFailure: true, timeoutMs: 60_000 }).catch(() => {});
  }
}

/** `--change` flags giving the committed layer its parent's ENTRYPOINT and CMD, not the /bin/sh -c LINE we ran. */
async function entrypointChanges(parent: string): Promise<string[]> {
  const { stdout } = await podman(['image', 'inspect', '--format', '{{json .Config.Entrypoint}}\t{{json .Config.Cmd}}', parent],
    { timeoutMs: 30_000 });
  const [entrypoint, cmd] = stdout.trim().split('\t').map((j) => {
    const v = JSON.parse(j || 'null') as unknown;
    return Array.isArray(v) ? JSON.stringify(v) : '[]';
  });
  return ['--change', `ENTRYPOINT ${entrypoint ?? '[]'}`, '--change', `CMD ${cmd ?? '[]'}`];
}
