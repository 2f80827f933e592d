import type { LatentConfig } from './latent-workers.js';
import { assertNever } from '../../protocol/assert-never.js';
import { CommandProvisioner } from './command-provisioner.js';
import { LocalVmProvisioner, type LocalVmGuestBuilder } from './local-vm-provisioner.js';
import type { Provisioner } from './provisioner.js';

export interface ProvisionerDeps {
  configDir: string;
  dataDir: string;
  /** Builds the local-vm guest (kernel + initramfs); the CLI passes one, as it needs worker code. */
  localVmGuest?: LocalVmGuestBuilder | null;
}

/**
 * The Provisioner for one `provisioners:` entry of crowdbake.yml, by its `type`. A new type is one more case.
 * `ec2` entries are pools (master/provisioners/ec2/cloud-pool.ts, with its Ec2Provisioner), made by LatentWorkers.
 */
export function createProvisioner(config: LatentConfig, deps: ProvisionerDeps): Provisioner {
  switch (config.type) {
    case 'command': return new CommandProvisioner({ start: config.start, stop: config.stop }, deps.configDir, config.startTimeout);
    case 'local-vm': return new LocalVmProvisioner(config, deps.dataDir, deps.localVmGuest ?? null);
    default: return assertNever(config, 'provisioner type');
  }
}
