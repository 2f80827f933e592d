import { ApiError } from '../api';
import { forgetAdminToken, loadAdminToken, saveAdminToken } from '../admin-token';
import { dashboard } from './store';

/**
 * The admin token flow: the token kept in localStorage is used when there is one; otherwise
 * (or when the master refuses it with 401/403) the token dialog asks for it.
 */

let answer: ((token: string | null) => void) | null = null;

/** Opens the token dialog; resolves with what was entered, or null when it was dismissed. */
export function askForAdminToken(purpose: string, message: string | null): Promise<string | null> {
  answer?.(null);
  return new Promise((resolve) => {
    answer = resolve;
    dashboard.getState().setTokenPrompt({ purpose, message });
  });
}

/** Called by the token dialog. */
export function answerTokenPrompt(token: string | null): void {
  const resolve = answer;
  answer = null;
  dashboard.getState().setTokenPrompt(null);
  resolve?.(token?.trim() || null);
}

export function forgetToken(): void {
  forgetAdminToken();
  dashboard.getState().setHasAdminToken(false);
}

/**
 * Runs `run` with the admin token, asking for it when none is kept and again, with the
 * master's reason, when it is refused. Resolves to null when the user dismisses the dialog.
 */
export async function withAdminToken<T>(purpose: string, run: (token: string) => Promise<T>): Promise<{ value: T } | null> {
  let token = loadAdminToken();
  let reason: string | null = null;
  for (;;) {
    if (!token) {
      token = await askForAdminToken(purpose, reason);
      if (!token) return null;
      saveAdminToken(token);
      dashboard.getState().setHasAdminToken(true);
    }
    try {
      return { value: await run(token) };
    } catch (e) {
      if (!(e instanceof ApiError) || !e.isAuth) throw e;
      forgetToken();
      token = null;
      reason = e.status === 403
        ? 'The master refused this admin token (wrong admin token). The token is in the file admin.token in the master\'s data directory.'
        : `The master asks for the admin token: ${e.message}`;
    }
  }
}
