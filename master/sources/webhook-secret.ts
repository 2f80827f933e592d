import { randomBytes } from 'node:crypto';
import { chmodSync, existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';

/**
 * The shared secret webhooks are verified with: `CROWDBAKE_WEBHOOK_SECRET` if set, else
 * `DATA/webhook.secret` (created with mode 0600 on first start). Paste it into the forge's
 * webhook settings (GitHub/Gitea "Secret", GitLab "Secret token").
 */
export function loadWebhookSecret(dataDir: string, env: NodeJS.ProcessEnv = process.env): string {
  const fromEnv = env.CROWDBAKE_WEBHOOK_SECRET?.trim();
  if (fromEnv) return fromEnv;
  const file = join(dataDir, 'webhook.secret');
  if (existsSync(file)) {
    const s = readFileSync(file, 'utf8').trim();
    if (!s) throw new Error(`${file} is empty; delete it to make a new webhook secret`);
    return s;
  }
  mkdirSync(dataDir, { recursive: true });
  const secret = randomBytes(32).toString('base64url');
  writeFileSync(file, `${secret}\n`, { mode: 0o600 });
  chmodSync(file, 0o600);
  return secret;
}
