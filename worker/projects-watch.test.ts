import { test } from 'node:test';
import assert from 'node:assert/strict';
import { generateKeyPairSync } from 'node:crypto';
import { projectChanges, type WatchedProject } from './projects-watch.js';

const p = (name: string, over: Partial<WatchedProject> = {}): WatchedProject => ({ name, master: `https://${name}.example`, token: `cbw1.${name}.s`, share: 1, ...over });

test('DATA/projects unchanged: nothing to do', () => {
  assert.deepEqual(projectChanges([p('a'), p('b')], [p('a'), p('b')], () => true), []);
});

test('left, re-joined with another token or master, a new share, a new project: each becomes its change, in that order', () => {
  const served = [p('gone'), p('token'), p('moved'), p('share', { share: 1 }), p('same')];
  const now = [p('token', { token: 'cbw1.token.new' }), p('moved', { master: 'https://elsewhere.example' }), p('share', { share: 3 }), p('same'), p('new')];
  assert.deepEqual(projectChanges(served, now, () => true), [
    { kind: 'leave', name: 'gone', why: 'left' },
    { kind: 'leave', name: 'token', why: 'its project file changed' },
    { kind: 'leave', name: 'moved', why: 'its project file changed' },
    { kind: 'share', name: 'share', from: 1, to: 3 },
    // The changed ones are served again at once, as new connections, with the new token or master.
    { kind: 'join', project: now[0] },
    { kind: 'join', project: now[1] },
    { kind: 'join', project: now[4] },
  ]);
});

test('a rotated worker key is taken from the next build on; the same key again is no change', () => {
  const k1 = generateKeyPairSync('ed25519').privateKey;
  const k2 = generateKeyPairSync('ed25519').privateKey;
  assert.deepEqual(projectChanges([p('a', { key: k1 })], [p('a', { key: k2 })], () => true), [{ kind: 'rekey', name: 'a', key: k2 }]);
  assert.deepEqual(projectChanges([p('a', { key: k1 })], [p('a', { key: k1 })], () => true), []);
  assert.deepEqual(projectChanges([p('a')], [p('a', { key: k1 })], () => true), [{ kind: 'rekey', name: 'a', key: k1 }], 'a key where there was none');
});

test('a project the agent may not join now (it drains; that master drained it) is not joined', () => {
  const now = [p('a'), p('drained')];
  assert.deepEqual(projectChanges([p('a')], now, (x) => x.name !== 'drained'), []);
});
