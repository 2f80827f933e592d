import { Component, type ReactNode } from 'react';

/**
 * Around a page loaded with import(): when its chunk cannot be fetched (the master was
 * upgraded and the chunk's name changed, the network dropped), say so with a reload button
 * instead of leaving the dashboard blank.
 */
export class LazyPageBoundary extends Component<{ children: ReactNode }, { error: string | null }> {
  override state = { error: null as string | null };

  static getDerivedStateFromError(e: unknown): { error: string } {
    return { error: e instanceof Error ? e.message : String(e) };
  }

  override render() {
    if (this.state.error === null) return this.props.children;
    return (
      <div className="banner banner-error" role="alert">
        <span>This page could not be loaded: {this.state.error}</span>
        <button type="button" className="button-small" onClick={() => window.location.reload()}>Reload</button>
      </div>
    );
  }
}
