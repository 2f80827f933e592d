import { createHash } from 'node:crypto';

/**
 * Cache keys of an environment's layers. The image after setup line i is keyed by the base's
 * identity and setup lines 1..i, chained:
 *
 *   key(0) = sha256("crowdbake-env v1\nbase " + identity)
 *   key(i) = sha256(key(i-1) + "\nsetup " + JSON.stringify(setup[i-1]))
 *
 * so changing line k changes the keys of layers k.. and keeps the ones before it.
 */

export const ENV_REPO = 'localhost/crowdbake-env';
/** Every image the environment cache makes carries this label; eviction only ever removes those. */
export const ENV_LABEL = 'crowdbake.env';
/** The full layer key, so an image can be matched to its declaration. */
export const KEY_LABEL = 'crowdbake.env.key';
const TAG_CHARS = 16;

function sha256(text: string): string {
  return createHash('sha256').update(text).digest('hex');
}

/** key(0..n): the base's key followed by one key per setup line. */
export function layerKeys(baseIdentity: string, setup: readonly string[]): string[] {
  const keys = [sha256(`crowdbake-env v1\nbase ${baseIdentity}`)];
  for (const line of setup) keys.push(sha256(`${keys[keys.length - 1]!}\nsetup ${JSON.stringify(line)}`));
  return keys;
}

/** localhost/crowdbake-env:<first 16 hex digits of the key>. */
export function layerTag(key: string, repo = ENV_REPO): string {
  return `${repo}:${key.slice(0, TAG_CHARS)}`;
}
