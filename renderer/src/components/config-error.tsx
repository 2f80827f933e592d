/** A broken builder file's problems, one per line, as the master reported them. */
export function ConfigError({ builder, error }: { builder: string; error: string }) {
  return (
    <div className="config-error">
      <p className="config-error-title">
        <strong>The builder file for {builder} has errors.</strong> Its last valid version, if it ever had one, stays in use.
      </p>
      <pre className="config-error-text">{error}</pre>
    </div>
  );
}
