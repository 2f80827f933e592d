import { useSyncExternalStore } from 'react';

export { href, parseRoute, type Route } from './routes';

export function navigate(to: string): void {
  window.location.hash = to.replace(/^#/, '');
}

function subscribe(onChange: () => void): () => void {
  window.addEventListener('hashchange', onChange);
  return () => window.removeEventListener('hashchange', onChange);
}

/** The current hash, re-rendering on change. */
export function useHash(): string {
  return useSyncExternalStore(subscribe, () => window.location.hash);
}
