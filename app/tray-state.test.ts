import assert from 'node:assert/strict';
import { existsSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { test } from 'node:test';
import { TRAY_STATES, trayPresentation, trayStateOf, trayStateOfAgent, type TrayMenuItem } from './tray-state.js';

const ASSETS = fileURLToPath(new URL('../../assets/tray/', import.meta.url));
const actions = (menu: TrayMenuItem[]) => menu.flatMap((m) => (m.kind === 'action' ? [`${m.action}${m.enabled ? '' : ' (disabled)'}`] : []));

test('every state has its own icon, at 16 px and @2x, in assets/tray', () => {
  const icons = TRAY_STATES.map((s) => trayPresentation(s).icon);
  assert.deepEqual(icons, ['tray-idle.png', 'tray-busy.png', 'tray-frozen.png', 'tray-paused.png', 'tray-offline.png', 'tray-attention.png']);
  for (const icon of icons) {
    assert.ok(existsSync(`${ASSETS}${icon}`), icon);
    assert.ok(existsSync(`${ASSETS}${icon.replace('.png', '@2x.png')}`), `${icon} @2x`);
  }
});

test('tooltips say the state and the builds', () => {
  assert.equal(trayPresentation('idle').tooltip, 'Crowdbake: Idle — ready for builds');
  assert.equal(trayPresentation('busy', { builds: [12, 13] }).tooltip, 'Crowdbake: Busy — running build #12, #13');
  assert.match(trayPresentation('frozen', { builds: [4] }).tooltip, /Frozen — build #4 is on hold/);
  assert.equal(trayPresentation('offline', { master: 'http://m:8585' }).tooltip, 'Crowdbake: Offline — not connected to the master\nhttp://m:8585');
  assert.equal(trayPresentation('attention', { attention: ['an update is required'] }).tooltip, 'Crowdbake: Needs your attention — an update is required');
});

test('the menu: status first, the window, pause or resume, finish-then-pause while building, quit last', () => {
  const idle = trayPresentation('idle').menu;
  assert.deepEqual(idle[0], { kind: 'status', label: 'Idle — ready for builds' });
  assert.deepEqual(actions(idle), ['open-window', 'pause', 'snooze', 'quit']);
  assert.deepEqual(actions(trayPresentation('paused').menu), ['open-window', 'resume', 'quit']);
  assert.deepEqual(actions(trayPresentation('offline').menu), ['open-window', 'pause (disabled)', 'snooze (disabled)', 'quit']);
  assert.deepEqual(actions(trayPresentation('busy').menu), ['open-window', 'pause', 'snooze', 'finish-then-pause', 'quit']);
  assert.deepEqual(actions(trayPresentation('busy', { pausingAfterCurrent: true }).menu), ['open-window', 'pause', 'snooze', 'finish-then-pause (disabled)', 'quit']);
  assert.deepEqual(idle.at(-1), { kind: 'action', action: 'quit', label: 'Quit Crowdbake', enabled: true });
});

test('master mode, autostart and notifications', () => {
  const menu = trayPresentation('busy', { autostart: true, notifications: false, runsMaster: false }).menu;
  assert.deepEqual(actions(menu), ['open-window', 'pause', 'snooze', 'finish-then-pause', 'start-master', 'quit']);
  assert.deepEqual(menu.filter((m) => m.kind === 'check'), [
    { kind: 'check', action: 'toggle-autostart', label: 'Start at login', checked: true },
    { kind: 'check', action: 'toggle-notifications', label: 'Notifications', checked: false },
  ]);
  assert.deepEqual(actions(trayPresentation('idle', { runsMaster: true }).menu), ['open-window', 'open-dashboard', 'pause', 'snooze', 'quit']);
  assert.equal(trayStateOfAgent(null), 'offline');
  assert.equal(trayStateOfAgent({ state: 'frozen' }), 'frozen');
  assert.equal(trayStateOfAgent({ state: 'idle' }, ['the disk is nearly full']), 'attention');
});

test('the state from the worker view and the pause switch', () => {
  assert.equal(trayStateOf(null, false), 'offline');
  assert.equal(trayStateOf({ connected: false, state: 'idle' }, true), 'offline');
  assert.equal(trayStateOf({ connected: true, state: 'busy' }, false), 'busy');
  assert.equal(trayStateOf({ connected: true, state: 'busy' }, true), 'paused');
  assert.equal(trayStateOf({ connected: true, state: 'frozen' }, false), 'frozen');
  assert.equal(trayStateOf({ connected: true, state: 'idle' }, false), 'idle');
});
