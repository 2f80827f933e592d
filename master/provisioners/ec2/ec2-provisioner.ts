import type { Ec2ProvisionerConfig } from '../../config/ec2-config.js';
import type { ProvisionContext, Provisioner } from '../provisioner.js';
import { Ec2Api, type CloudInstance } from './ec2-api.js';
import { renderUserData } from './user-data.js';

/**
 * The `ec2` Provisioner: start(ctx) launches one instance whose user-data runs
 * `crowdbake worker` as ctx.name with ctx.token (a one-time credential the pool made);
 * stop(ctx) terminates it. Which instance is whose is kept here (and in its tags, for the
 * reaper). `CloudPool` decides when; this class only talks to EC2.
 */
export class Ec2Provisioner implements Provisioner {
  readonly api: Ec2Api;
  private readonly instances = new Map<string, CloudInstance>();

  constructor(private readonly config: Ec2ProvisionerConfig, private readonly farmId: string, private readonly expiresAt: (worker: string) => string) {
    this.api = new Ec2Api(config, farmId);
  }

  async start(ctx: ProvisionContext): Promise<void> {
    const userData = renderUserData(this.config, {
      worker: ctx.name, masterUrl: ctx.masterUrl, credential: ctx.token, expiresAt: this.expiresAt(ctx.name), labels: ctx.labels, farmId: this.farmId,
    });
    const instance = await this.api.launch(ctx.name, userData);
    this.instances.set(ctx.name, instance);
    ctx.log(`launched ${instance.id} (${instance.type ?? 'its launch template\'s type'}, ${instance.spot ? 'spot' : 'on-demand'})`);
  }

  async stop(ctx: ProvisionContext): Promise<void> {
    const instance = this.instances.get(ctx.name);
    if (!instance) return;
    await this.api.terminate([instance.id]);
    this.instances.delete(ctx.name);
    ctx.log(`terminated ${instance.id}`);
  }

  instanceOf(worker: string): CloudInstance | null {
    return this.instances.get(worker) ?? null;
  }

  forget(worker: string): void {
    this.instances.delete(worker);
  }
}
