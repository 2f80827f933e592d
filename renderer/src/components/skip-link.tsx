/** "Skip to content": the first Tab stop; moves focus past the navigation. */
export function SkipLink({ target }: { target: string }) {
  return (
    <button
      type="button"
      className="skip-link"
      onClick={() => document.getElementById(target)?.focus()}
    >
      Skip to content
    </button>
  );
}
