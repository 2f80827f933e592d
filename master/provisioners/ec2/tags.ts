/** The tags every cloud instance of a farm carries (the reaper and DescribeInstances filter on them). */
export const CLOUD_TAGS = {
  farm: 'crowdbake:farm',
  provisioner: 'crowdbake:provisioner',
  worker: 'crowdbake:worker',
  orphanedAt: 'crowdbake:orphaned-at',
} as const;
