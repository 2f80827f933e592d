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

/**
 * The secret of one forge: `CROWDBAKE_WEBHOOK_SECRET_GITHUB` (`_GITLAB`, `_GITEA`) if set,
 * else `DATA/webhook-github.secret` (…), created with mode 0600 on first start. Each forge
 * has its own: GitLab sends its token in plain in every request, so whoever sees one GitLab
 * delivery (a proxy log, the forge's hook log) must not be able to sign GitHub or Gitea pushes.
 */
export function loadForgeSecret(dataDir: string, forge: 'github' | 'gitlab' | 'gitea', env: NodeJS.ProcessEnv = process.env): string {
  const fromEnv = env[`CROWDBAKE_WEBHOOK_SECRET_${forge.toUpperCase()}`]?.trim();
  if (fromEnv) return fromEnv;
  const file = join(dataDir, `webhook-${forge}.secret`);
  if (existsSync(file)) {
    const s = readFileSync(file, 'utf8').trim();
    if (!s) throw new Error(`${file} is empty; delete it to make a new ${forge} webhook secret`);
    return s;
  }
  mkdirSync(dataDir, { recursive: true });
  const secret = randomBytes(32).toString('base64url');
  writeFileSync(file, `${secret}\n`, { mode: 0o600 });
  chmodSync(file, 0o600);
  return secret;
}
