import { useRef } from 'react';
import type { InviteCreated } from '../../../protocol/api.js';
import { CopyButton } from './copy-button';

/** A new invitation's join link, shown this once (the master keeps only its hash), with a copy button. */
export function JoinLinkBox({ invite }: { invite: InviteCreated }) {
  const input = useRef<HTMLInputElement>(null);
  return (
    <div className="join-link">
      <label htmlFor="join-link-text" className="sr-only">Join link of invitation {invite.id}</label>
      <input id="join-link-text" ref={input} readOnly value={invite.link} onFocus={(e) => e.target.select()} />
      <CopyButton text={invite.link} label="Copy link" fallbackInput={() => input.current} />
      <p className="muted small">Shown only now. A volunteer runs <code>crowdbake join &apos;{invite.link.slice(0, 24)}…&apos;</code>.</p>
    </div>
  );
}
