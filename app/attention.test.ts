import assert from 'node:assert/strict';
import { test } from 'node:test';
import { PreferencesSchema, type AgentStatus } from '../protocol/control-api.js';
import { attentionItems, DISK_NEARLY_FULL_BYTES, updateNotice } from './attention.js';

const range = (oldest: number, newest: number, oldestUntil: string | null = null) => ({ version: 'x', workerProtocols: { oldest, newest, oldestUntil } });

test('update notices from the masters\' stated protocol ranges', () => {
  assert.equal(updateNotice([{ master: 'http://a', info: range(1, 2) }], 2).state, 'current');
  assert.equal(updateNotice([{ master: 'http://a', info: null }], 2).state, 'current', 'a master that states nothing (older) asks nothing');
  const available = updateNotice([{ master: 'http://a', info: range(2, 3, '2027-06-30') }], 2);
  assert.equal(available.state, 'available');
  assert.match(available.message, /http:\/\/a speaks worker protocol 3; this version is accepted until 2027-06-30/);
  const required = updateNotice([{ master: 'http://a', info: range(2, 3) }, { master: 'http://b', info: range(3, 3) }], 2);
  assert.equal(required.state, 'required');
  assert.match(required.message, /http:\/\/b no longer accepts this version \(worker protocol 2; it needs 3 or newer\)/);
});

test('what needs the volunteer: an update required, a nearly full disk, a project that refused this computer', () => {
  const status = { projects: [{ name: 'served' }] } as unknown as AgentStatus;
  const current = { state: 'current' as const, message: '' };
  assert.deepEqual(attentionItems({ update: current, freeBytes: DISK_NEARLY_FULL_BYTES * 2, status, joined: ['served'] }), []);
  const items = attentionItems({ update: { state: 'required', message: 'An update is required.' }, freeBytes: 1024 ** 3, status, joined: ['served', 'banned-me'] });
  assert.deepEqual(items, ['An update is required.', 'The disk is nearly full: 1.0 GiB free where builds run.', 'The project banned-me refused this computer (banned, or its token revoked); see Projects.']);
  assert.deepEqual(attentionItems({ update: current, freeBytes: null, status: null, joined: ['x'] }), [], 'no agent: nothing is known to be refused');
  assert.ok(PreferencesSchema.parse({}));
});
