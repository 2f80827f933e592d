import type { ReactNode } from 'react';
import { useDocumentTitle } from '../hooks/use-document-title';

/** The page's h1 (focusable by script after navigation) and the document title. */
export function PageTitle({ children, title, extra }: { children: ReactNode; title?: string; extra?: ReactNode }) {
  useDocumentTitle(title ?? (typeof children === 'string' ? children : 'Dashboard'));
  return (
    <div className="page-title">
      <h1 tabIndex={-1}>{children}</h1>
      {extra}
    </div>
  );
}
