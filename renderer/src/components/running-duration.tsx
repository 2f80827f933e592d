import type { BuildView } from '../../../protocol/api.js';
import { buildDuration } from '../format';
import { useNow } from '../hooks/use-now';

/** How long a running build has run, ticking every second. */
export function RunningDuration({ build }: { build: BuildView }) {
  const now = useNow();
  return <>{buildDuration(build, now)}</>;
}
