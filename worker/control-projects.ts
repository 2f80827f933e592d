import { resolve } from 'node:path';
import * as z from 'zod';
import { parseJoinLink } from '../protocol/join.js';
import { defaultDisplayName, defaultWorkerName, join, joinedAlready } from './join-project.js';
import { projectRows, removeProject, setShare, type ProjectRow } from './projects.js';

/** The projects part of the control API, what `crowdbake join|projects|leave` do, for the volunteer pages in a browser. */

export const ShareRequestSchema = z.strictObject({ share: z.number().positive().max(1_000_000) });
export const JoinRequestSchema = z.strictObject({ link: z.string().min(1).max(4096), displayName: z.string().trim().min(1).max(64).optional(), listed: z.boolean().default(true) });

type Live = Parameters<typeof projectRows>[1];

export function listProjectRows(dataDir: string, live: Live): ProjectRow[] {
  return projectRows(dataDir, live, 'running');
}

export function changeShare(dataDir: string, name: string, share: number, live: Live): ProjectRow[] {
  setShare(dataDir, name, share);
  return listProjectRows(dataDir, live);
}

export function leave(dataDir: string, name: string, live: Live): ProjectRow[] {
  removeProject(dataDir, name);
  return listProjectRows(dataDir, live);
}

/**
 * Joins from a link the volunteer pasted into their own page (signed in to this agent). The
 * link is checked by parseJoinLink (an http(s) master URL, a code, a pin) before anything is
 * sent; what goes to that master is this worker's new public credential and the code.
 */
export async function joinFromLink(dataDir: string, body: z.infer<typeof JoinRequestSchema>) {
  const link = parseJoinLink(body.link.trim());
  const already = joinedAlready(dataDir, link);
  if (already) throw new Error(already);
  return join(link, { dataDir: resolve(dataDir), worker: defaultWorkerName(), displayName: body.displayName ?? defaultDisplayName(), listed: body.listed });
}
