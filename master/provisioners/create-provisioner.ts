import type { ProvisionerConfig } from '../config/master-config.js';
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

/** The Provisioner for one `provisioners:` entry of crowdbake.yml, by its `type`. A new type is one more case. */
export function createProvisioner(config: ProvisionerConfig, deps: ProvisionerDeps): Provisioner {
  switch (config.type) {
    case 'command': return new CommandProvisioner({ start: config.start, stop: config.stop }, deps.configDir, config.startTimeout);
    case 'local-vm': return new LocalVmProvisioner(config, deps.dataDir, deps.localVmGuest ?? null);
    default: return assertNever(config, 'provisioner type');
  }
}
