import type {
  ArtifactRow, BuildPatch, BuildRow, CapacityRow, CreditDayRow, CreditTotalRow, InviteRow, StepRow, TokenRow, TrustEventRow, VerificationRow,
  VolunteerRow, WorkerFlagRow, WorkerRow,
} from './store.js';

/** A row as a driver returns it: column name to value (PostgreSQL's BIGINT arrives as text). */
export type Row = Record<string, unknown>;

/** The column each updatable build field is stored in. */
export const BUILD_COLUMNS: Record<keyof BuildPatch, string> = {
  state: 'state', result: 'result', worker: 'worker', attempt: 'attempt', message: 'message',
  startedAt: 'started_at', finishedAt: 'finished_at', supersededBy: 'superseded_by', revision: 'revision',
};

const str = (v: unknown): string | null => (v === null || v === undefined ? null : String(v));

export function tokenFromRow(r: Row): TokenRow {
  return {
    name: String(r.name), hash: String(r.hash), labels: JSON.parse(String(r.labels)) as string[],
    maxBuilds: Number(r.max_builds), createdAt: String(r.created_at), revokedAt: str(r.revoked_at),
    volunteerId: str(r.volunteer_id), workerKey: str(r.worker_key),
    ...(Number(r.one_time ?? 0) === 1 ? { oneTime: true, expiresAt: str(r.expires_at), usedAt: str(r.used_at) } : {}),
  };
}

/** The one_time and expires_at columns of a token row. */
export const oneTimeValues = (row: TokenRow): [number, string | null] => [row.oneTime ? 1 : 0, row.oneTime ? row.expiresAt ?? null : null];

export function workerFromRow(r: Row): WorkerRow {
  return { name: String(r.name), capabilities: String(r.capabilities), lastSeenAt: String(r.last_seen_at) };
}

export function buildFromRow(r: Row): BuildRow {
  return {
    id: Number(r.id), builder: String(r.builder), revision: str(r.revision), reason: str(r.reason),
    state: r.state as BuildRow['state'], result: str(r.result) as BuildRow['result'], worker: str(r.worker),
    attempt: Number(r.attempt), message: str(r.message), queuedAt: String(r.queued_at),
    startedAt: str(r.started_at), finishedAt: str(r.finished_at),
    branch: str(r.branch), trigger: (str(r.trigger_kind) ?? 'force') as BuildRow['trigger'],
    rebuildOf: num(r.rebuild_of), supersededBy: num(r.superseded_by),
  };
}

const num = (v: unknown): number | null => (v === null || v === undefined ? null : Number(v));

export function stepFromRow(r: Row): StepRow {
  return {
    buildId: Number(r.build_id), index: Number(r.idx), name: String(r.name),
    state: r.state as StepRow['state'], result: str(r.result) as StepRow['result'],
    exitCode: r.exit_code === null || r.exit_code === undefined ? null : Number(r.exit_code),
  };
}

export function artifactFromRow(r: Row): ArtifactRow {
  return {
    buildId: Number(r.build_id), name: String(r.name), size: Number(r.size), sha256: String(r.sha256),
    worker: str(r.worker), attempt: r.attempt === null || r.attempt === undefined ? null : Number(r.attempt),
  };
}

export function verificationFromRow(r: Row): VerificationRow {
  return {
    buildId: Number(r.build_id), groupId: Number(r.group_id), replicas: Number(r.replicas),
    verdict: String(r.verdict) as VerificationRow['verdict'], detail: str(r.detail),
  };
}

export function workerFlagFromRow(r: Row): WorkerFlagRow {
  return { worker: String(r.worker), buildId: Number(r.build_id), reason: String(r.reason), at: String(r.at) };
}

/** The message for a second token with a name already taken (by this master or another). */
export const duplicateTokenMessage = (name: string): string => `a token named "${name}" already exists`;

export function inviteFromRow(r: Row): InviteRow {
  return {
    id: String(r.id), codeHash: String(r.code_hash), labels: JSON.parse(String(r.labels)) as string[], maxBuilds: Number(r.max_builds),
    maxUses: Number(r.max_uses), usesLeft: Number(r.uses_left), expiresAt: str(r.expires_at), note: String(r.note),
    createdAt: String(r.created_at), revokedAt: str(r.revoked_at),
  };
}

export function volunteerFromRow(r: Row): VolunteerRow {
  return {
    id: String(r.id), publicKey: String(r.public_key), displayName: String(r.display_name), listed: Number(r.listed) === 1,
    trust: String(r.trust) as VolunteerRow['trust'], trustSource: String(r.trust_source) as VolunteerRow['trustSource'],
    streak: Number(r.streak), createdAt: String(r.created_at),
  };
}

export function trustEventFromRow(r: Row): TrustEventRow {
  return {
    volunteerId: String(r.volunteer_id), trust: String(r.trust) as TrustEventRow['trust'], previous: str(r.previous) as TrustEventRow['previous'],
    source: String(r.source) as TrustEventRow['source'], reason: String(r.reason), at: String(r.at),
  };
}

export function creditDayFromRow(r: Row): CreditDayRow {
  return {
    day: String(r.day), worker: String(r.worker), volunteerId: str(r.volunteer_id), builds: Number(r.builds), cpuMs: Number(r.cpu_ms),
    wallMs: Number(r.wall_ms), agreed: Number(r.agreed), disagreed: Number(r.disagreed),
  };
}

export function creditTotalFromRow(r: Row): CreditTotalRow {
  return {
    worker: String(r.worker), volunteerId: str(r.volunteer_id), builds: Number(r.builds), cpuMs: Number(r.cpu_ms),
    wallMs: Number(r.wall_ms), agreed: Number(r.agreed), disagreed: Number(r.disagreed),
  };
}

export function capacityFromRow(r: Row): CapacityRow {
  return { hourOfWeek: Number(r.hour_of_week), samples: Number(r.samples), workersSum: Number(r.workers_sum), workersMax: Number(r.workers_max) };
}
