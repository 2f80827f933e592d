import type { Ec2ProvisionerConfig } from '../../config/ec2-config.js';

export interface UserDataInput {
  worker: string;
  masterUrl: string;
  /** The one-time credential: one connection, one build, expiring unused at `expiresAt`. */
  credential: string;
  expiresAt: string;
  labels: string[];
  farmId: string;
}

/** A single-quoted shell word. */
export const shellQuote = (s: string): string => `'${s.replace(/'/g, `'\\''`)}'`;

/**
 * The default install step for a stock Debian (13+) or Ubuntu image: Node.js, podman and git
 * from the distribution when missing, then Crowdbake from npm (`install.package`).
 */
function defaultInstall(pkg: string): string {
  return `if ! command -v node >/dev/null 2>&1 || ! command -v podman >/dev/null 2>&1; then
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -q && apt-get install -y -q nodejs npm podman runc git busybox-static ca-certificates
fi
npm install -g --no-fund --no-audit ${shellQuote(pkg)}`;
}

/**
 * The instance's user-data: a shell script (cloud-init runs `#!` user-data as root on first
 * boot) that installs or updates Crowdbake and starts one worker. The only secret in it is the
 * one-time credential, passed in the environment (the worker removes it once read) — worth
 * nothing after the worker's first connection or its expiry. Anyone who can read the
 * instance's user-data (its processes through the metadata service, IAM principals with
 * ec2:DescribeInstanceAttribute) sees it; docs/SECURITY.md says what that allows.
 */
export function renderUserData(config: Ec2ProvisionerConfig, u: UserDataInput): string {
  const executor = config.executors.length === 1 ? config.executors[0]! : 'auto';
  const args = [
    'worker', '--master', u.masterUrl, '--name', u.worker, '--when', 'always', '--idle-source', 'none', '--executor', executor,
    ...(u.labels.length ? ['--labels', u.labels.join(',')] : []),
    '--interruption-url', config.metadataUrl,
  ];
  return `#!/bin/sh
# Crowdbake cloud worker ${u.worker} of farm ${u.farmId}, started by the master's ec2 provisioner "${config.name}".
# The credential below is good for ONE connection and one build, and expires unused at ${u.expiresAt}.
set -eu
export HOME="\${HOME:-/root}"
cd "$HOME"
${config.install.script ?? defaultInstall(config.install.package)}
export CROWDBAKE_WORKER_TOKEN=${shellQuote(u.credential)}
# The worker exits when it leaves (its one build done, drained, refused); the master then
# terminates this instance (it never powers itself off: the master decides, and counts the time).
exec crowdbake ${args.map(shellQuote).join(' ')}
`;
}
