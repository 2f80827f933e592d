import type { AgentStatus } from './agent-api';

export const STATE_LABEL: Record<AgentStatus['state'], string> = {
  idle: 'Idle', busy: 'Building', frozen: 'Frozen', paused: 'Paused', offline: 'Offline',
};

/** One sentence on what the state means for the person at this computer. */
export const STATE_MEANING: Record<AgentStatus['state'], string> = {
  idle: 'Ready: builds start when the master has work and your rules allow it.',
  busy: 'A build is running on this computer now.',
  frozen: 'A build is on hold (frozen, not lost) while you use this computer.',
  paused: 'Takes no new builds; running ones are frozen until you resume.',
  offline: 'Not connected to the master; it keeps trying.',
};
