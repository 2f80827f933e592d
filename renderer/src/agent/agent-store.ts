import { createStore } from 'zustand/vanilla';
import { useStore } from 'zustand';
import type { AgentStatus, AppInfo, HistoryEntry, ProjectView } from './agent-api';

/** The log being shown: one local build's, read from the agent and followed while it runs. */
export interface AgentLog {
  id: number | null;
  entry: HistoryEntry | null;
  text: string;
  /** Bytes read so far (where the next read starts). */
  size: number;
  status: 'idle' | 'loading' | 'ready' | 'error';
  error: string | null;
  truncated: boolean;
}

export interface AgentState {
  status: AgentStatus | null;
  /** The last status read failed (the agent stopped, or refused this browser). */
  statusError: string | null;
  /** The agent answered 401: this browser must sign in again with `crowdbake ui`. */
  signedOut: boolean;
  history: HistoryEntry[];
  historyLoaded: boolean;
  historyError: string | null;
  log: AgentLog;
  /** The desktop app's own state (null in a browser, or until it answered). */
  app: AppInfo | null;
  projects: ProjectView[];
  projectsLoaded: boolean;
  projectsError: string | null;
}

export const emptyLog = (id: number | null): AgentLog => ({ id, entry: null, text: '', size: 0, status: id === null ? 'idle' : 'loading', error: null, truncated: false });

/**
 * The volunteer pages' one store (plain data; agent-actions.ts writes it, components read it
 * through narrow selectors).
 */
export function createAgentStore() {
  return createStore<AgentState>()(() => ({
    status: null,
    statusError: null,
    signedOut: false,
    history: [],
    historyLoaded: false,
    historyError: null,
    log: emptyLog(null),
    app: null,
    projects: [],
    projectsLoaded: false,
    projectsError: null,
  }));
}

export const agentStore = createAgentStore();

export function useAgent<T>(selector: (s: AgentState) => T): T {
  return useStore(agentStore, selector);
}

export interface BuilderResults {
  builder: string;
  runs: number;
  success: number;
  failure: number;
  /** error + cancelled */
  other: number;
  last: HistoryEntry;
  /** The newest entry that can be run again here. */
  rerunnable: HistoryEntry | null;
}

/** This machine's results per builder, from its history (newest entry first). */
export function resultsByBuilder(history: readonly HistoryEntry[]): BuilderResults[] {
  const out = new Map<string, BuilderResults>();
  for (const h of history) {
    let r = out.get(h.builder);
    if (!r) {
      r = { builder: h.builder, runs: 0, success: 0, failure: 0, other: 0, last: h, rerunnable: null };
      out.set(h.builder, r);
    }
    r.runs++;
    if (h.result === 'success') r.success++;
    else if (h.result === 'failure') r.failure++;
    else if (h.result !== null) r.other++;
    if (!r.rerunnable && h.canRerun) r.rerunnable = h;
  }
  return [...out.values()].sort((a, b) => a.builder.localeCompare(b.builder));
}
