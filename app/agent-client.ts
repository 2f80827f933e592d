/**
 * The desktop app's line to the local worker agent: its control API, found through
 * DATA/control.json (loopback URL and per-start secret). Plain Node, no electron, so the tray's
 * behaviour is tested against a real agent. Every answer is checked against the protocol.
 */
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { AgentStatusSchema, type AgentStatus, type IdleReport } from '../protocol/control-api.js';
import type { TrayAction } from './tray-state.js';

export class AgentClient {
  private constructor(readonly url: string, private readonly secret: string) {}

  /** The agent serving `dataDir`, or a sentence saying why there is none. */
  static open(dataDir: string): AgentClient | string {
    const file = join(dataDir, 'control.json');
    if (!existsSync(file)) return `no agent is running for ${dataDir}`;
    try {
      const info = JSON.parse(readFileSync(file, 'utf8')) as { url?: unknown; secret?: unknown };
      if (typeof info.url !== 'string' || typeof info.secret !== 'string') return `${file} is incomplete`;
      if (!/^http:\/\/127\.0\.0\.1:\d+$/.test(info.url)) return `${file} names ${info.url}, not a loopback address`;
      return new AgentClient(info.url, info.secret);
    } catch (e) {
      return `${file} is unreadable: ${(e as Error).message}`;
    }
  }

  /** One call of the control API (`/api/v1` + path); throws the agent's reason on refusal. */
  async call(method: string, path: string, body?: unknown): Promise<unknown> {
    const res = await fetch(`${this.url}/api/v1${path}`, {
      method,
      headers: { authorization: `Bearer ${this.secret}`, ...(body === undefined ? {} : { 'content-type': 'application/json' }) },
      ...(body === undefined ? {} : { body: JSON.stringify(body) }),
      signal: AbortSignal.timeout(5000),
    });
    if (!res.ok) {
      const text = await res.text();
      let msg = text;
      try { msg = (JSON.parse(text) as { error: string }).error; } catch { /* plain text */ }
      throw new Error(`the agent refused ${method} ${path}: ${msg}`);
    }
    return res.status === 204 ? null : res.json();
  }

  private async statusFrom(method: string, path: string, body?: unknown): Promise<AgentStatus> {
    const parsed = AgentStatusSchema.safeParse(await this.call(method, path, body));
    if (!parsed.success) throw new Error(`the agent answered ${path} with something that is not a status`);
    return parsed.data;
  }

  status(): Promise<AgentStatus> { return this.statusFrom('GET', '/status'); }
  pause(): Promise<AgentStatus> { return this.statusFrom('POST', '/pause'); }
  resume(): Promise<AgentStatus> { return this.statusFrom('POST', '/resume'); }
  snooze(duration = '1h'): Promise<AgentStatus> { return this.statusFrom('POST', '/snooze', { duration }); }

  /** Feeds the agent the desktop's idle state (it must run with --idle-source app); false if it does not take it. */
  async reportIdle(report: IdleReport): Promise<boolean> {
    try {
      await this.call('POST', '/idle', report);
      return true;
    } catch (e) {
      if (/does not use the app as its idle source/.test((e as Error).message)) return false;
      throw e;
    }
  }

  /** The log of local history entry `id` from byte `from` on, and its size now. */
  async log(id: number, from: number): Promise<{ text: string; size: number }> {
    const res = await fetch(`${this.url}/api/v1/history/${id}/log?from=${from}`, { headers: { authorization: `Bearer ${this.secret}` }, signal: AbortSignal.timeout(5000) });
    if (!res.ok) throw new Error(`the agent refused the log of local build ${id}: HTTP ${res.status}`);
    const text = await res.text();
    return { text, size: Number(res.headers.get('x-log-size') ?? from + Buffer.byteLength(text)) };
  }

  /** A sign-in link for the volunteer pages (works once, within a minute). */
  async signInUrl(): Promise<string> {
    const answer = (await this.call('POST', '/ui-tickets', {})) as { url?: unknown };
    if (typeof answer.url !== 'string') throw new Error('the agent gave no sign-in link');
    return answer.url;
  }
}

/** What a tray menu action does to the agent; resolves to its status after (null: not an agent action). */
export async function applyTrayAction(action: TrayAction, agent: AgentClient): Promise<AgentStatus | null> {
  switch (action) {
    case 'pause': return agent.pause();
    case 'resume': return agent.resume();
    case 'snooze': return agent.snooze('1h');
    case 'finish-then-pause': await agent.call('PATCH', '/preferences', { pauseAfterCurrent: true }); return agent.status();
    case 'open-window':
    case 'open-dashboard':
    case 'toggle-autostart':
    case 'toggle-notifications':
    case 'start-master':
    case 'quit':
      return null;
  }
}
