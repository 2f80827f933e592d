import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { initialProjects } from './agent.js';

const TOKEN = `cbw1.w7.${'s'.repeat(32)}`;
const PIN = `sha256:${'AB'.repeat(32)}`;

test('the projects served at start, and each mistake in the switches named: no token, not a worker token, nothing joined, a bad pin, an unreadable pin file', (t) => {
  const dataDir = mkdtempSync(join(tmpdir(), 'crowdbake-initial-'));
  t.after(() => rmSync(dataDir, { recursive: true, force: true }));
  assert.throws(() => initialProjects({ master: 'https://m.example', dataDir }, dataDir), /--master needs --token/);
  assert.throws(() => initialProjects({ master: 'https://m.example', token: 'hunter2', dataDir }, dataDir), /--token does not look like a worker token \(cbw1\.NAME\.SECRET\)/);
  assert.throws(() => initialProjects({ dataDir }, dataDir), /this agent has joined no project \(.*projects is empty\): run `crowdbake join LINK/);
  assert.throws(() => initialProjects({ master: 'https://m.example', token: TOKEN, pin: 'sha1:00', dataDir }, dataDir), /--pin "sha1:00" must be sha256: followed by 64 hex digits/);

  const [one] = initialProjects({ master: 'https://m.example', token: TOKEN, pin: PIN, dataDir }, dataDir);
  assert.deepEqual(one, { name: 'w7', master: 'https://m.example', token: TOKEN, pin: PIN.toLowerCase(), share: 1 }, 'the name from the token; the pin lower-cased');
  assert.equal(initialProjects({ master: 'https://m.example', token: TOKEN, dataDir }, dataDir)[0]!.pin, PIN.toLowerCase(), 'the pin is remembered for the next start');
  assert.equal(initialProjects({ master: 'https://other.example', token: TOKEN, dataDir }, dataDir)[0]!.pin, undefined, 'and only for that master');
  assert.equal(initialProjects({ master: 'https://m.example', token: TOKEN, name: 'desk', dataDir }, dataDir)[0]!.name, 'desk', '--name wins over the token\'s');
  writeFileSync(join(dataDir, 'master-pin.json'), '{ not json');
  assert.throws(() => initialProjects({ master: 'https://m.example', token: TOKEN, dataDir }, dataDir), /master-pin\.json is unreadable; delete it and pass --pin again/);
});
