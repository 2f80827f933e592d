import { JOIN_LINK_SCHEME } from '../protocol/join.js';

/** The `crowdbake:` URL scheme the app registers, so a join link on a project's page opens it. */
export const URL_SCHEME = JOIN_LINK_SCHEME.slice(0, -1);

/**
 * The join link among a command line's arguments (how Linux and Windows hand a `crowdbake:`
 * link to the app, also to the running instance through 'second-instance'), or null. It is
 * not trusted: the window shows it and the volunteer confirms; parseJoinLink checks it then.
 */
export function joinLinkInArgv(argv: readonly string[]): string | null {
  const link = argv.find((a) => a.toLowerCase().startsWith(JOIN_LINK_SCHEME));
  return link !== undefined && link.length <= 4096 ? link : null;
}
