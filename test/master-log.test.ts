import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, spawnSync } from 'node:child_process';
import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { CLI, cleanup, tempDir, until } from './helpers/cluster.js';

test('crowdbake master --log-format json: every line on stderr is one JSON object (level, time, msg); a broken builder file is a warning line', async (t) => {
  const dir = tempDir('master-json-log');
  t.after(() => cleanup(dir));
  mkdirSync(join(dir, 'config', 'builders'), { recursive: true });
  writeFileSync(join(dir, 'config', 'builders', 'broken.yml'), 'steps: [\n');
  let err = '';
  const c = spawn(process.execPath, [CLI, 'master', '--config', join(dir, 'config'), '--data', join(dir, 'data'), '--listen', '127.0.0.1:0', '--log-format', 'json'], { stdio: ['ignore', 'pipe', 'pipe'] });
  let out = '';
  c.stdout.on('data', (d: Buffer) => { out += d.toString(); });
  c.stderr.on('data', (d: Buffer) => { err += d.toString(); });
  t.after(() => { c.kill('SIGKILL'); });
  await until('the master to say where it listens', () => /dashboard and API at/.test(err), 30_000);
  c.kill('SIGTERM');
  await new Promise((r) => c.once('exit', r));
  const lines = err.trim().split('\n').map((l) => {
    try { return JSON.parse(l) as { level: number; time: number; msg: string; name: string }; } catch { assert.fail(`not a JSON line: ${l}`); }
  });
  assert.equal(out, '', 'nothing on stdout in json mode');
  for (const l of lines) {
    assert.equal(typeof l.time, 'number');
    assert.equal(l.name, 'crowdbake-master');
    assert.ok([30, 40, 50].includes(l.level), `a level: ${JSON.stringify(l)}`);
  }
  const warn = lines.find((l) => /broken\.yml/.test(l.msg));
  assert.equal(warn?.level, 40, 'the broken builder file is a warning');
  assert.ok(lines.some((l) => l.level === 30 && /^dashboard and API at http:\/\/127\.0\.0\.1:\d+\/$/.test(l.msg)));
  assert.ok(lines.some((l) => l.msg === 'shutting down'));
});

test('crowdbake master --log-format: anything but plain or json is refused by name', () => {
  const r = spawnSync(process.execPath, [CLI, 'master', '--log-format', 'xml'], { encoding: 'utf8', timeout: 30_000 });
  assert.equal(r.status, 2);
  assert.match(r.stderr, /--log-format "xml" must be one of plain, json/);
});
