import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import type { TestContext } from 'node:test';
import { CLI, cleanup, tempDir, testMaster, type TestMaster } from './cluster.js';
import { startEc2StandIn, type Ec2StandIn } from './ec2-stand-in.js';

/** The access key the tests' master signs with: from the SDK's standard chain (the environment), never from crowdbake.yml. */
export const STAND_IN_ACCESS_KEY = 'AKIDSTANDINTEST0001';

export interface CloudFarm {
  dir: string;
  ec2: Ec2StandIn;
  master: TestMaster;
  farmId: string;
  /** Restarts the master on the same config and data (the stand-in keeps its instances). */
  restart(): Promise<TestMaster>;
}

/**
 * A master whose crowdbake.yml has one `ec2` provisioner named `burst` pointed at a local
 * EC2 stand-in (test/helpers/ec2-stand-in.ts). Its instances run the user-data's worker with
 * this checkout: the install step (`install.script`) links `crowdbake` to it instead of
 * installing from npm; everything after that line is the user-data as the master wrote it.
 */
export async function cloudFarm(t: TestContext, builders: Record<string, string>, ec2Yaml: string, top = ''): Promise<CloudFarm> {
  const dir = tempDir('cloud');
  const ec2 = await startEc2StandIn(join(dir, 'instances'));
  process.env.AWS_ACCESS_KEY_ID = STAND_IN_ACCESS_KEY;
  process.env.AWS_SECRET_ACCESS_KEY = 'stand-in-secret';
  process.env.AWS_EC2_METADATA_DISABLED = 'true';
  mkdirSync(join(dir, 'config'), { recursive: true });
  writeFileSync(join(dir, 'config', 'crowdbake.yml'), `${top}provisioners:
  - name: burst
    type: ec2
    region: eu-west-1
    endpoint: ${ec2.url}
    ami: ami-0123456789abcdef0
    instanceTypes: [t3.small]
    subnet: subnet-0abc
    securityGroups: [sg-0abc]
    executors: [host]
    labels: [linux]
    bootGrace: 60s
    reapEvery: 500ms
    install:
      script: |
        mkdir -p "$HOME/bin" && ln -s '${CLI}' "$HOME/bin/crowdbake"
        export PATH="$HOME/bin:$PATH"
${ec2Yaml.replace(/^/gm, '    ')}
`);
  let master = await testMaster(builders, { dir });
  const farm: CloudFarm = {
    dir, ec2, master, farmId: readFileSync(join(dir, 'data', 'farm-id'), 'utf8').trim(),
    restart: async () => {
      await farm.master.close();
      master = await testMaster({}, { dir });
      farm.master = master;
      return master;
    },
  };
  t.after(async () => {
    // An instance's console, for a test that failed.
    if (process.env.CROWDBAKE_TEST_CLOUD_CONSOLE) for (const i of ec2.instances.values()) console.error(`--- ${i.id} (${i.state}) ---\n${i.output}`);
    await farm.master.close();
    await ec2.close();
    cleanup(dir);
  });
  return farm;
}

export const linuxHostBuilder = (run: string, extra = '') => `requires: { labels: [linux], executor: host }\n${extra}steps:\n  - run: ${JSON.stringify(run)}\n`;
