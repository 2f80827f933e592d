import { test } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, mkdirSync, mkdtempSync, rmSync, utimesSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { sweep } from './retention.js';

test('retention removes finished logs and artifacts older than the policy, nothing else', () => {
  const d = mkdtempSync(join(tmpdir(), 'crowdbake-retention-'));
  try {
    mkdirSync(join(d, 'logs'));
    mkdirSync(join(d, 'artifacts', '1'), { recursive: true });
    mkdirSync(join(d, 'artifacts', '2'), { recursive: true });
    for (const f of ['logs/1.log.gz', 'logs/2.log.gz', 'logs/3.log', 'artifacts/1/a.tar', 'artifacts/2/b.tar']) writeFileSync(join(d, f), 'x');
    const old = new Date(Date.now() - 10 * 86_400_000);
    for (const f of ['logs/1.log.gz', 'logs/3.log', 'artifacts/1']) utimesSync(join(d, f), old, old);
    assert.deepEqual(sweep(d, { logsMs: 86_400_000, artifactsMs: 86_400_000 }), { logs: 1, artifacts: 1 });
    assert.equal(existsSync(join(d, 'logs/1.log.gz')), false);
    assert.equal(existsSync(join(d, 'logs/2.log.gz')), true);
    assert.equal(existsSync(join(d, 'logs/3.log')), true, 'a plain .log belongs to a build still running');
    assert.equal(existsSync(join(d, 'artifacts/1')), false);
    assert.equal(existsSync(join(d, 'artifacts/2/b.tar')), true);
    assert.deepEqual(sweep(d, { logsMs: null, artifactsMs: null }), { logs: 0, artifacts: 0 });
  } finally {
    rmSync(d, { recursive: true, force: true });
  }
});
