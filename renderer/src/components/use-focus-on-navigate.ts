import { useEffect, useRef } from 'react';

/**
 * After a navigation (a new `hash`, not the first load), moves focus to the new page's
 * heading so keyboard and screen-reader users start at the top of what changed.
 */
export function useFocusOnNavigate(hash: string): void {
  const first = useRef(true);
  useEffect(() => {
    if (first.current) { first.current = false; return; }
    document.querySelector<HTMLElement>('#main h1')?.focus();
    window.scrollTo(0, 0);
  }, [hash]);
}
