import { createPrivateKey, createPublicKey, generateKeyPairSync, type KeyObject } from 'node:crypto';
import { chmodSync, existsSync, mkdirSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import * as z from 'zod';

/**
 * The projects this volunteer agent joined ([crowd]): DATA/projects/<name>.json (the master's
 * URL, this worker's name and token, the pin, the share) and DATA/projects/<name>.key (the
 * worker's Ed25519 private key), both 0600. DATA/volunteer.key is the volunteer's identity,
 * made once per DATA and used for every project, so that all of this agent's workers are one
 * volunteer to each master. Invite codes are never stored here.
 */

export const PROJECT_NAME_RE = /^[a-z0-9][a-z0-9._-]{0,63}$/;

export const ProjectFileSchema = z.strictObject({
  master: z.string().regex(/^https?:\/\/[^/\s]+$/),
  worker: z.string().min(1).max(100),
  token: z.string().regex(/^cbw1\.[^.]+\.[A-Za-z0-9_-]+$/),
  pin: z.string().regex(/^sha256:[0-9a-f]{64}$/).nullable(),
  share: z.number().positive().max(1_000_000),
  farm: z.string().max(100),
  joinedAt: z.string(),
});
export type ProjectFile = z.infer<typeof ProjectFileSchema>;
export interface Project extends ProjectFile { name: string }

export function projectsDir(dataDir: string): string { return join(dataDir, 'projects'); }

/** The file name for a project: the farm's name, else the master's host, made safe. */
export function projectNameFor(farm: string | undefined, master: string): string {
  const base = (farm && farm.trim() ? farm : new URL(master).host).toLowerCase().replace(/[^a-z0-9._-]+/g, '-').replace(/^[-._]+|[-._]+$/g, '').slice(0, 64);
  return base || 'project';
}

export function listProjects(dataDir: string): Project[] {
  const dir = projectsDir(dataDir);
  if (!existsSync(dir)) return [];
  const out: Project[] = [];
  for (const f of readdirSync(dir).sort()) {
    if (!f.endsWith('.json')) continue;
    const name = f.slice(0, -5);
    if (!PROJECT_NAME_RE.test(name)) continue;
    let parsed;
    try { parsed = ProjectFileSchema.safeParse(JSON.parse(readFileSync(join(dir, f), 'utf8'))); } catch (e) {
      throw new Error(`${join(dir, f)} is unreadable (${(e as Error).message}); remove it with \`crowdbake leave ${name}\``);
    }
    if (!parsed.success) throw new Error(`${join(dir, f)} is damaged (${parsed.error.issues[0]?.path.join('.')}: ${parsed.error.issues[0]?.message}); remove it with \`crowdbake leave ${name}\``);
    out.push({ name, ...parsed.data });
  }
  return out;
}

export function getProject(dataDir: string, name: string): Project {
  const p = listProjects(dataDir).find((x) => x.name === name);
  if (!p) {
    const names = listProjects(dataDir).map((x) => x.name);
    throw new Error(`no joined project "${name}" in ${projectsDir(dataDir)}${names.length ? ` (joined: ${names.join(', ')})` : ' (none joined yet: crowdbake join LINK)'}`);
  }
  return p;
}

/** Writes a project's two files 0600 (the key first: a .json without its key is never seen). */
export function saveProject(dataDir: string, name: string, file: ProjectFile, workerKeyPem?: string): void {
  if (!PROJECT_NAME_RE.test(name)) throw new Error(`"${name}" is not a usable project name`);
  const dir = projectsDir(dataDir);
  mkdirSync(dir, { recursive: true, mode: 0o700 });
  if (workerKeyPem !== undefined) writeSecret(join(dir, `${name}.key`), workerKeyPem);
  writeSecret(join(dir, `${name}.json`), `${JSON.stringify(ProjectFileSchema.parse(file), null, 2)}\n`);
}

export function setShare(dataDir: string, name: string, share: number): Project {
  if (!Number.isFinite(share) || share <= 0 || share > 1_000_000) throw new Error(`share "${share}" must be a positive number (up to 1000000)`);
  const { name: _n, ...file } = getProject(dataDir, name);
  saveProject(dataDir, name, { ...file, share });
  return { name, ...file, share };
}

export function removeProject(dataDir: string, name: string): Project {
  const p = getProject(dataDir, name);
  rmSync(join(projectsDir(dataDir), `${name}.json`), { force: true });
  rmSync(join(projectsDir(dataDir), `${name}.key`), { force: true });
  return p;
}

/** [provenance] The worker key this agent made when it joined the project (its .key file), or null if it has none. */
export function projectKey(dataDir: string, name: string): KeyObject | null {
  const file = join(projectsDir(dataDir), `${name}.key`);
  if (!existsSync(file)) return null;
  let key: KeyObject;
  try { key = createPrivateKey(readFileSync(file, 'utf8')); } catch (e) { throw new Error(`${file} is not a private key (PEM): ${(e as Error).message}; remove the project with \`crowdbake leave ${name}\` and join again`); }
  if (key.asymmetricKeyType !== 'ed25519') throw new Error(`${file} is a ${key.asymmetricKeyType} key; a worker key is Ed25519`);
  return key;
}

function writeSecret(file: string, text: string): void {
  writeFileSync(file, text, { mode: 0o600 });
  chmodSync(file, 0o600); // an existing file keeps its mode on write
}

/**
 * The volunteer identity key: DATA/volunteer.key, made on first use (or copied from `from`).
 * Nothing is written until `save()` (after the master accepted the join).
 */
export function volunteerKey(dataDir: string, from?: string): { privateKey: KeyObject; publicKey: string; save(): void } {
  const file = join(dataDir, 'volunteer.key');
  let pem: string;
  let write = false;
  if (from !== undefined) {
    pem = readFileSync(from, 'utf8');
    checkKey(pem, from);
    if (existsSync(file) && readFileSync(file, 'utf8').trim() !== pem.trim()) {
      throw new Error(`${file} already holds another volunteer key; this agent is already a volunteer (remove it first to use ${from})`);
    }
    write = !existsSync(file);
  } else if (existsSync(file)) {
    pem = readFileSync(file, 'utf8');
    checkKey(pem, file);
  } else {
    pem = generateKeyPairSync('ed25519').privateKey.export({ type: 'pkcs8', format: 'pem' }).toString();
    write = true;
  }
  const privateKey = createPrivateKey(pem);
  return {
    privateKey,
    publicKey: createPublicKey(privateKey).export({ type: 'spki', format: 'der' }).toString('base64'),
    save: () => { if (write) { mkdirSync(dataDir, { recursive: true }); writeSecret(file, pem); write = false; } },
  };
}

function checkKey(pem: string, where: string): void {
  let k: KeyObject;
  try { k = createPrivateKey(pem); } catch { throw new Error(`${where} is not a private key (PEM)`); }
  if (k.asymmetricKeyType !== 'ed25519') throw new Error(`${where} is a ${k.asymmetricKeyType} key; a volunteer key is Ed25519`);
}

/**
 * Resource share (like BOINC's): which project gets the next free build slot. Each project's
 * deficit is what it should have used (its share of all slot-seconds used so far) minus what it
 * used; the one with the largest deficit among those `eligible` wins (ties: the larger share,
 * then the name). Pure: the agent keeps `used` and asks this at every free slot.
 */
export function pickByShare(projects: { name: string; share: number; used: number; eligible: boolean }[]): string | null {
  const total = projects.reduce((a, p) => a + p.used, 0);
  const shares = projects.reduce((a, p) => a + p.share, 0);
  let best: { name: string; deficit: number; share: number } | null = null;
  for (const p of projects) {
    if (!p.eligible) continue;
    const deficit = (shares > 0 ? (total * p.share) / shares : 0) - p.used;
    if (!best || deficit > best.deficit + 1e-9 || (Math.abs(deficit - best.deficit) <= 1e-9 && (p.share > best.share || (p.share === best.share && p.name < best.name)))) {
      best = { name: p.name, deficit, share: p.share };
    }
  }
  return best?.name ?? null;
}

/** One joined project as `crowdbake projects` and the desktop window show it: its file, and what a running agent says of it. */
export interface ProjectRow {
  name: string; farm: string; master: string; worker: string; share: number; joinedAt: string;
  state: string; running?: number; usedSeconds?: number;
}

/** The joined projects with their live state (`live`: the agent's status.projects, undefined when no agent answers). */
export function projectRows(dataDir: string, live: { name: string; connected: boolean; running: number; usedSeconds: number }[] | undefined, agent: 'running' | string): ProjectRow[] {
  return listProjects(dataDir).map((p) => {
    const l = live?.find((x) => x.name === p.name);
    return {
      name: p.name, farm: p.farm, master: p.master, worker: p.worker, share: p.share, joinedAt: p.joinedAt,
      state: l ? (l.connected ? 'connected' : 'connecting') : agent === 'running' ? 'not served' : 'agent not running',
      ...(l ? { running: l.running, usedSeconds: l.usedSeconds } : {}),
    };
  });
}
