import {
  CreateTagsCommand, DescribeInstancesCommand, EC2Client, RunInstancesCommand, StopInstancesCommand, TerminateInstancesCommand,
  type Instance, type RunInstancesCommandInput, type Tag,
} from '@aws-sdk/client-ec2';
import type { Ec2ProvisionerConfig } from '../../config/ec2-config.js';
import { CLOUD_TAGS } from './tags.js';

/** One of the farm's instances, as DescribeInstances tells it. */
export interface CloudInstance {
  id: string;
  state: string;
  /** The worker its user-data runs (tag crowdbake:worker), or null. */
  worker: string | null;
  provisioner: string | null;
  launchedAt: number | null;
  /** When the reaper first found it without a worker (tag crowdbake:orphaned-at), or null. */
  orphanedAt: number | null;
  type: string | null;
  spot: boolean;
}

/** Errors meaning "not this instance type or market now": the next one is tried. */
const TRY_NEXT = new Set([
  'InsufficientInstanceCapacity', 'Unsupported', 'InsufficientCapacity', 'InsufficientHostCapacity', 'InsufficientReservedInstanceCapacity',
  'SpotMaxPriceTooLow', 'MaxSpotInstanceCountExceeded', 'InstanceLimitExceeded', 'VcpuLimitExceeded', 'UnsupportedOperation', 'InvalidInstanceType',
]);

/**
 * The EC2 calls of the ec2 provisioner, on the AWS SDK v3. Credentials come from the SDK's
 * standard chain (environment, shared files, SSO, instance role), never from crowdbake.yml;
 * `endpoint` points it at an EC2-compatible API.
 */
export class Ec2Api {
  private readonly client: EC2Client;

  constructor(private readonly config: Ec2ProvisionerConfig, private readonly farmId: string) {
    this.client = new EC2Client({ region: config.region, maxAttempts: 3, ...(config.endpoint ? { endpoint: config.endpoint } : {}) });
  }

  /**
   * Launches one instance running `userData`: each instance type in order, spot first when
   * configured (then on-demand, if `onDemandFallback`); the first that EC2 accepts wins.
   * Capacity and support errors fall through to the next; any other error stops at once.
   */
  async launch(worker: string, userData: string): Promise<CloudInstance> {
    const c = this.config;
    const markets: boolean[] = c.spot ? (c.onDemandFallback ? [true, false] : [true]) : [false];
    const types: (string | undefined)[] = c.instanceTypes ?? [undefined];
    const tried: string[] = [];
    for (const spot of markets) {
      for (const type of types) {
        try {
          const out = await this.client.send(new RunInstancesCommand(this.runInput(worker, userData, type, spot)));
          const i = out.Instances?.[0];
          if (!i?.InstanceId) throw new Error('RunInstances answered without an instance id');
          return toCloudInstance(i, spot);
        } catch (e) {
          const code = errorCode(e);
          if (!TRY_NEXT.has(code)) throw new Error(`RunInstances (${type ?? 'the launch template\'s type'}, ${spot ? 'spot' : 'on-demand'}): ${code}: ${(e as Error).message}`);
          tried.push(`${type ?? 'launch template'} ${spot ? 'spot' : 'on-demand'}: ${code}`);
        }
      }
    }
    throw new Error(`no instance type is available now (${tried.join('; ')})`);
  }

  private runInput(worker: string, userData: string, type: string | undefined, spot: boolean): RunInstancesCommandInput {
    const c = this.config;
    const tags: Tag[] = [
      { Key: CLOUD_TAGS.farm, Value: this.farmId }, { Key: CLOUD_TAGS.provisioner, Value: c.name },
      { Key: CLOUD_TAGS.worker, Value: worker }, { Key: 'Name', Value: `crowdbake ${worker}` },
      ...Object.entries(c.tags).map(([Key, Value]) => ({ Key, Value })),
    ];
    return {
      MinCount: 1, MaxCount: 1,
      ...(c.ami ? { ImageId: c.ami } : {}),
      ...(c.launchTemplate ? { LaunchTemplate: { ...(c.launchTemplate.id ? { LaunchTemplateId: c.launchTemplate.id } : { LaunchTemplateName: c.launchTemplate.name! }), Version: c.launchTemplate.version ?? '$Default' } } : {}),
      ...(type ? { InstanceType: type as RunInstancesCommandInput['InstanceType'] } : {}),
      ...(c.subnet ? { SubnetId: c.subnet } : {}),
      ...(c.securityGroups.length ? { SecurityGroupIds: c.securityGroups } : {}),
      UserData: Buffer.from(userData).toString('base64'),
      // A worker that powers its machine off ends the bill; IMDSv2 only, one hop: build
      // containers (one hop further) cannot read the metadata service, its user-data included.
      InstanceInitiatedShutdownBehavior: 'terminate',
      MetadataOptions: { HttpTokens: 'required', HttpPutResponseHopLimit: 1, HttpEndpoint: 'enabled' },
      ...(spot ? { InstanceMarketOptions: { MarketType: 'spot', SpotOptions: { SpotInstanceType: 'one-time', InstanceInterruptionBehavior: 'terminate' } } } : {}),
      TagSpecifications: [{ ResourceType: 'instance', Tags: tags }, { ResourceType: 'volume', Tags: tags.slice(0, 3) }],
    };
  }

  /** The farm's instances that are not terminated (every page). */
  async list(): Promise<CloudInstance[]> {
    const out: CloudInstance[] = [];
    let token: string | undefined;
    do {
      const page = await this.client.send(new DescribeInstancesCommand({
        Filters: [
          { Name: `tag:${CLOUD_TAGS.farm}`, Values: [this.farmId] },
          { Name: `tag:${CLOUD_TAGS.provisioner}`, Values: [this.config.name] },
          { Name: 'instance-state-name', Values: ['pending', 'running', 'stopping', 'stopped'] },
        ],
        ...(token ? { NextToken: token } : {}),
      }));
      for (const r of page.Reservations ?? []) for (const i of r.Instances ?? []) if (i.InstanceId) out.push(toCloudInstance(i, i.InstanceLifecycle === 'spot'));
      token = page.NextToken;
    } while (token);
    return out;
  }

  async terminate(ids: string[]): Promise<void> {
    if (ids.length) await this.client.send(new TerminateInstancesCommand({ InstanceIds: ids }));
  }

  async stop(ids: string[]): Promise<void> {
    if (ids.length) await this.client.send(new StopInstancesCommand({ InstanceIds: ids }));
  }

  /** Marks instances the reaper found without a worker, so a restarted master knows too. */
  async markOrphaned(ids: string[], at: number): Promise<void> {
    if (ids.length) await this.client.send(new CreateTagsCommand({ Resources: ids, Tags: [{ Key: CLOUD_TAGS.orphanedAt, Value: new Date(at).toISOString() }] }));
  }

  close(): void {
    this.client.destroy();
  }
}

function toCloudInstance(i: Instance, spot: boolean): CloudInstance {
  const tag = (k: string) => i.Tags?.find((t) => t.Key === k)?.Value ?? null;
  const orphaned = tag(CLOUD_TAGS.orphanedAt);
  return {
    id: i.InstanceId!, state: i.State?.Name ?? 'pending', worker: tag(CLOUD_TAGS.worker), provisioner: tag(CLOUD_TAGS.provisioner),
    launchedAt: i.LaunchTime ? i.LaunchTime.getTime() : null, orphanedAt: orphaned ? Date.parse(orphaned) || null : null,
    type: i.InstanceType ?? null, spot,
  };
}

function errorCode(e: unknown): string {
  const x = e as { name?: string; Code?: string; code?: string };
  return x.Code ?? x.code ?? x.name ?? 'Error';
}
