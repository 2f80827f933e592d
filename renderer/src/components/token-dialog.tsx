import { useEffect, useRef, useState, type FormEvent } from 'react';
import { answerTokenPrompt } from '../store/admin';
import { useTokenPrompt } from '../store/hooks';

/** Asks for the master's admin token (a modal <dialog>: focus stays inside, Escape cancels). */
export function TokenDialog() {
  const prompt = useTokenPrompt();
  const ref = useRef<HTMLDialogElement>(null);
  const input = useRef<HTMLInputElement>(null);
  const [value, setValue] = useState('');

  useEffect(() => {
    const dialog = ref.current;
    if (!dialog) return;
    if (prompt && !dialog.open) {
      setValue('');
      dialog.showModal();
      input.current?.focus();
    } else if (!prompt && dialog.open) {
      dialog.close();
    }
  }, [prompt]);

  const submit = (e: FormEvent) => {
    e.preventDefault();
    if (value.trim()) answerTokenPrompt(value);
  };

  return (
    <dialog
      ref={ref}
      className="dialog"
      aria-labelledby="token-dialog-title"
      aria-describedby="token-dialog-text"
      onCancel={(e) => { e.preventDefault(); answerTokenPrompt(null); }}
    >
      <form onSubmit={submit}>
        <h2 id="token-dialog-title">Admin token</h2>
        <p id="token-dialog-text">
          To {prompt?.purpose ?? 'continue'}, enter the master&apos;s admin token (the file <code>admin.token</code> in its
          data directory). This browser keeps it until you choose &ldquo;Forget the admin token&rdquo;.
        </p>
        {prompt?.message && <p className="form-error" role="alert">{prompt.message}</p>}
        <label htmlFor="admin-token-input">Admin token</label>
        <input
          id="admin-token-input"
          type="password"
          autoComplete="off"
          spellCheck={false}
          value={value}
          onChange={(e) => setValue(e.target.value)}
          required
          ref={input}
        />
        <div className="dialog-buttons">
          <button type="submit" className="button-primary">Continue</button>
          <button type="button" onClick={() => answerTokenPrompt(null)}>Cancel</button>
        </div>
      </form>
    </dialog>
  );
}
