import { useState, type FormEvent, type ReactNode } from 'react';
import { savePreferences } from './agent-actions';
import type { Preferences } from './agent-api';
import { draftFrom, patchFrom, type LimitsDraft, type LimitsErrors } from './limits-model';

function Field({ id, label, hint, error, children }: { id: string; label: string; hint?: string; error: string | undefined; children: ReactNode }) {
  return (
    <div className={`field${error ? ' field-invalid' : ''}`}>
      <label htmlFor={id}>{label}</label>
      {children}
      {hint && <p className="hint" id={`${id}-hint`}>{hint}</p>}
      {error && <p className="form-error" id={`${id}-error`}>{error}</p>}
    </div>
  );
}

/** aria attributes tying an input to its hint and error. */
const described = (id: string, hint: boolean, error: string | undefined) => ({
  'aria-invalid': error ? true : undefined,
  'aria-describedby': [hint ? `${id}-hint` : '', error ? `${id}-error` : ''].filter(Boolean).join(' ') || undefined,
});

export function LimitsForm({ prefs, saved, onSaved }: { prefs: Preferences; saved: boolean; onSaved(): void }) {
  const [draft, setDraft] = useState<LimitsDraft>(() => draftFrom(prefs));
  const [errors, setErrors] = useState<LimitsErrors>({});
  const [busy, setBusy] = useState(false);
  const [refused, setRefused] = useState<string | null>(null);
  const [dirty, setDirty] = useState(false);
  const change = <K extends keyof LimitsDraft>(key: K, value: LimitsDraft[K]) => {
    setDraft((d) => ({ ...d, [key]: value }));
    setDirty(true);
  };

  const submit = async (e: FormEvent) => {
    e.preventDefault();
    setRefused(null);
    const r = patchFrom(draft);
    if (!r.ok) {
      setErrors(r.errors);
      const first = Object.keys(r.errors)[0];
      if (first) document.getElementById(`limit-${first}`)?.focus();
      return;
    }
    setErrors({});
    setBusy(true);
    const out = await savePreferences(r.patch);
    setBusy(false);
    if (out.ok) onSaved();
    else setRefused(out.error);
  };

  const count = Object.keys(errors).length;
  return (
    <form className="card limits-form" onSubmit={(e) => void submit(e)} noValidate aria-describedby="limits-status">
      {count > 0 && <p className="form-error" role="alert">{count === 1 ? 'One value needs fixing' : `${count} values need fixing`}; nothing was changed.</p>}
      {refused && <p className="form-error" role="alert">The agent refused the change: {refused}</p>}

      <fieldset>
        <legend>When to build</legend>
        <div className="radio-row">
          <label><input type="radio" name="when" value="idle" checked={draft.when === 'idle'} onChange={() => change('when', 'idle')} /> Only while I am away (idle)</label>
          <label><input type="radio" name="when" value="always" checked={draft.when === 'always'} onChange={() => change('when', 'always')} /> Whenever there is work</label>
        </div>
        <Field id="limit-idleAfter" label="Idle time before builds start" hint="For example 3m or 30s. Input freezes running builds at once." error={errors.idleAfter}>
          <input id="limit-idleAfter" value={draft.idleAfter} onChange={(e) => change('idleAfter', e.target.value)} disabled={draft.when === 'always'} {...described('limit-idleAfter', true, errors.idleAfter)} />
        </Field>
        <div className="field">
          <label className="check"><input type="checkbox" checked={draft.scheduleOn} onChange={(e) => change('scheduleOn', e.target.checked)} /> Only during these hours</label>
          <div className="time-row">
            <Field id="limit-start" label="From" error={errors.start}>
              <input id="limit-start" type="time" value={draft.start} onChange={(e) => change('start', e.target.value)} disabled={!draft.scheduleOn} {...described('limit-start', false, errors.start)} />
            </Field>
            <Field id="limit-end" label="Until" error={errors.end}>
              <input id="limit-end" type="time" value={draft.end} onChange={(e) => change('end', e.target.value)} disabled={!draft.scheduleOn} {...described('limit-end', false, errors.end)} />
            </Field>
          </div>
        </div>
        <div className="field">
          <label className="check"><input type="checkbox" checked={draft.onBattery} onChange={(e) => change('onBattery', e.target.checked)} /> Build while on battery power</label>
        </div>
        <Field id="limit-week" label="Schedule per weekday" hint='Replaces the hours above, e.g. "mon-fri 18:00-08:00; sat,sun any; wed never". Days not named: any time. Empty: none.' error={errors.week}>
          <input id="limit-week" value={draft.week} onChange={(e) => change('week', e.target.value)} {...described('limit-week', true, errors.week)} />
        </Field>
        <Field id="limit-maxOtherCpu" label="Hold builds while other programs use more than (% CPU)" hint="Empty: no such limit." error={errors.maxOtherCpu}>
          <input id="limit-maxOtherCpu" inputMode="decimal" value={draft.maxOtherCpu} onChange={(e) => change('maxOtherCpu', e.target.value)} {...described('limit-maxOtherCpu', true, errors.maxOtherCpu)} />
        </Field>
        <Field id="limit-otherCpuGrace" label="…for longer than" hint="A short spike does not hold builds. For example 30s or 2m." error={errors.otherCpuGrace}>
          <input id="limit-otherCpuGrace" value={draft.otherCpuGrace} onChange={(e) => change('otherCpuGrace', e.target.value)} {...described('limit-otherCpuGrace', true, errors.otherCpuGrace)} />
        </Field>
        <div className="field">
          <label className="check"><input type="checkbox" checked={draft.startPaused} onChange={(e) => change('startPaused', e.target.checked)} /> Start paused after a restart</label>
        </div>
      </fieldset>

      <fieldset>
        <legend>While I use this computer</legend>
        <div className="radio-row">
          <label><input type="radio" name="whileHere" value="freeze" checked={draft.whileHere === 'freeze'} onChange={() => change('whileHere', 'freeze')} /> Freeze builds</label>
          <label><input type="radio" name="whileHere" value="gently" checked={draft.whileHere === 'gently'} onChange={() => change('whileHere', 'gently')} /> Keep going gently</label>
        </div>
        <Field id="limit-hereCpus" label="Cores at most" hint="For example 1 or 0.5. Empty: no cap of cores." error={errors.hereCpus}>
          <input id="limit-hereCpus" inputMode="decimal" value={draft.hereCpus} onChange={(e) => change('hereCpus', e.target.value)} disabled={draft.whileHere === 'freeze'} {...described('limit-hereCpus', true, errors.hereCpus)} />
        </Field>
        <Field id="limit-hereCpuPercent" label="Share of all processors at most (%)" hint="The tighter of the two applies. Empty: no such cap." error={errors.hereCpuPercent}>
          <input id="limit-hereCpuPercent" inputMode="decimal" value={draft.hereCpuPercent} onChange={(e) => change('hereCpuPercent', e.target.value)} disabled={draft.whileHere === 'freeze'} {...described('limit-hereCpuPercent', true, errors.hereCpuPercent)} />
        </Field>
        <Field id="limit-maxTemp" label="Temperature cap (°C)" hint="Above it builds are slowed to the caps above; 5 °C above it they are held. Empty: none." error={errors.maxTemp}>
          <input id="limit-maxTemp" inputMode="decimal" value={draft.maxTemp} onChange={(e) => change('maxTemp', e.target.value)} {...described('limit-maxTemp', true, errors.maxTemp)} />
        </Field>
      </fieldset>

      <fieldset>
        <legend>How much a build may use while I am away</legend>
        <Field id="limit-cpus" label="CPU cores" hint="For example 2 or 0.5. Empty: all." error={errors.cpus}>
          <input id="limit-cpus" inputMode="decimal" value={draft.cpus} onChange={(e) => change('cpus', e.target.value)} {...described('limit-cpus', true, errors.cpus)} />
        </Field>
        <Field id="limit-memory" label="Memory" hint="For example 4g or 512m. Empty: no cap." error={errors.memory}>
          <input id="limit-memory" value={draft.memory} onChange={(e) => change('memory', e.target.value)} {...described('limit-memory', true, errors.memory)} />
        </Field>
        <Field id="limit-disk" label="Disk" hint="For example 20g. Empty: no cap." error={errors.disk}>
          <input id="limit-disk" value={draft.disk} onChange={(e) => change('disk', e.target.value)} {...described('limit-disk', true, errors.disk)} />
        </Field>
      </fieldset>

      <div className="dialog-buttons">
        <button type="submit" className="button-primary" disabled={busy}>{busy ? 'Saving…' : 'Save limits'}</button>
        <span id="limits-status" role="status" className="muted">{saved && !dirty ? 'Saved; the agent applies them now.' : ''}</span>
      </div>
    </form>
  );
}
