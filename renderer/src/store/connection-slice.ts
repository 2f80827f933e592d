import type { StateCreator } from 'zustand/vanilla';
import type { ConnectionStatus } from '../api';
import type { DashboardState } from './store';

export interface Connection {
  status: ConnectionStatus;
  /** While reconnecting: the wait before the next try. */
  retryInMs: number | null;
  /** Why the live connection was lost. */
  error: string | null;
  /** The last REST load that failed (cleared by the next that works). */
  loadError: string | null;
  /** Event frames dropped because they did not match the protocol. */
  invalidFrames: number;
}

export interface ConnectionSlice {
  connection: Connection;
  setConnection(status: ConnectionStatus, detail?: { retryInMs?: number | null; error?: string | null }): void;
  setLoadError(message: string | null): void;
  countInvalidFrame(): void;
}

export const createConnectionSlice: StateCreator<DashboardState, [], [], ConnectionSlice> = (set, get) => ({
  connection: { status: 'connecting', retryInMs: null, error: null, loadError: null, invalidFrames: 0 },
  setConnection: (status, detail = {}) =>
    set({ connection: { ...get().connection, status, retryInMs: detail.retryInMs ?? null, error: detail.error ?? null } }),
  setLoadError: (loadError) => {
    if (get().connection.loadError !== loadError) set({ connection: { ...get().connection, loadError } });
  },
  countInvalidFrame: () => set({ connection: { ...get().connection, invalidFrames: get().connection.invalidFrames + 1 } }),
});
