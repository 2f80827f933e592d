import type { StateCreator } from 'zustand/vanilla';
import type { ArtifactView } from '../../../protocol/api.js';
import { capLog } from '../log-merge';
import type { DashboardState } from './store';

/** The log kept in memory for the build page: its last 2 MB (the raw log link has all of it). */
export const MAX_LOG_CHARS = 2 * 1024 * 1024;

export type LoadStatus = 'idle' | 'loading' | 'ready' | 'error';

/** The build the detail page shows, with its log and artifacts. */
export interface Selection {
  buildId: number | null;
  /** Set when GET /builds/ID failed (for example 404). */
  buildError: string | null;
  log: string;
  logStatus: LoadStatus;
  logError: string | null;
  /** The head of the log was dropped to stay under MAX_LOG_CHARS. */
  logTruncated: boolean;
  artifacts: ArtifactView[] | null;
  artifactsError: string | null;
}

export interface SelectionSlice {
  selection: Selection;
  selectBuild(buildId: number | null): void;
  setBuildError(message: string | null): void;
  setLog(text: string): void;
  appendLog(chunk: string): void;
  setLogError(message: string): void;
  /** The log is being fetched again (after a reconnect); what is shown stays until it arrives. */
  markLogLoading(): void;
  setArtifacts(artifacts: ArtifactView[] | null, error?: string | null): void;
}

const empty = (buildId: number | null): Selection => ({
  buildId, buildError: null, log: '', logStatus: buildId === null ? 'idle' : 'loading', logError: null, logTruncated: false,
  artifacts: null, artifactsError: null,
});

export const createSelectionSlice: StateCreator<DashboardState, [], [], SelectionSlice> = (set, get) => {
  const patch = (p: Partial<Selection>) => set({ selection: { ...get().selection, ...p } });
  return {
    selection: empty(null),
    selectBuild: (buildId) => set({ selection: empty(buildId) }),
    setBuildError: (buildError) => patch({ buildError }),
    setLog: (text) => {
      const capped = capLog(text, MAX_LOG_CHARS);
      patch({ log: capped.text, logTruncated: capped.truncated, logStatus: 'ready', logError: null });
    },
    appendLog: (chunk) => {
      const s = get().selection;
      const capped = capLog(s.log + chunk, MAX_LOG_CHARS);
      patch({ log: capped.text, logTruncated: s.logTruncated || capped.truncated });
    },
    setLogError: (logError) => patch({ logStatus: 'error', logError }),
    markLogLoading: () => patch({ logStatus: 'loading' }),
    setArtifacts: (artifacts, artifactsError = null) => patch({ artifacts, artifactsError }),
  };
};
