/**
 * The admin token, kept in this browser's localStorage after it was entered once. Writes to
 * the REST API (force, cancel, rebuild) send it as `Authorization: Bearer <token>`.
 */
const KEY = 'crowdbake.adminToken';

function storage(): Storage | null {
  try {
    return window.localStorage;
  } catch {
    return null; // storage disabled: the token is asked for each time
  }
}

export function loadAdminToken(): string | null {
  try {
    return storage()?.getItem(KEY) || null;
  } catch {
    return null;
  }
}

export function saveAdminToken(token: string): void {
  try {
    storage()?.setItem(KEY, token);
  } catch { /* quota or privacy mode: not kept */ }
}

export function forgetAdminToken(): void {
  try {
    storage()?.removeItem(KEY);
  } catch { /* nothing kept */ }
}
