import type { StateCreator } from 'zustand/vanilla';
import { loadAdminToken } from '../admin-token';
import type { DashboardState } from './store';

export interface TokenPrompt {
  /** What the token is for: "force a build of hello". */
  purpose: string;
  /** Why it is asked again (the master refused the last one), or null. */
  message: string | null;
}

export interface AuthSlice {
  /** Open while the dashboard waits for the admin token. */
  tokenPrompt: TokenPrompt | null;
  hasAdminToken: boolean;
  setTokenPrompt(prompt: TokenPrompt | null): void;
  setHasAdminToken(has: boolean): void;
}

export const createAuthSlice: StateCreator<DashboardState, [], [], AuthSlice> = (set) => ({
  tokenPrompt: null,
  hasAdminToken: loadAdminToken() !== null,
  setTokenPrompt: (tokenPrompt) => set({ tokenPrompt }),
  setHasAdminToken: (hasAdminToken) => set({ hasAdminToken }),
});
