/** The Crowdbake loaf, inline so the dashboard needs no image files. Decorative. */
export function BrandMark() {
  return (
    <svg className="brand-mark" viewBox="0 0 32 32" width="28" height="28" aria-hidden="true" focusable="false">
      <path d="M4 22c0-8 5.4-14 12-14s12 6 12 14v2a2 2 0 0 1-2 2H6a2 2 0 0 1-2-2z" fill="#c98a3d" />
      <path d="M11 13.5l2.5 4M16 12l1 4.5M21 13.5l-1.5 4" stroke="#7a4a17" strokeWidth="1.8" strokeLinecap="round" />
    </svg>
  );
}
