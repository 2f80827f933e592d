import { useState } from 'react';

/**
 * Copies `text` to the clipboard and says so. Where the Clipboard API is refused (an
 * insecure origin, a denied permission) it selects the text in `fallbackInput` for Ctrl+C.
 */
export function CopyButton({ text, label, fallbackInput }: { text: string; label: string; fallbackInput?: () => HTMLInputElement | null }) {
  const [said, setSaid] = useState('');
  const copy = async () => {
    try {
      await navigator.clipboard.writeText(text);
      setSaid('Copied.');
    } catch {
      const input = fallbackInput?.();
      input?.focus();
      input?.select();
      setSaid('Copying was refused by the browser: the link is selected, press Ctrl+C.');
    }
  };
  return (
    <>
      <button type="button" className="button-small" onClick={() => void copy()}>{label}</button>
      <span role="status" className="muted small">{said}</span>
    </>
  );
}
