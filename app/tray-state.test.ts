import assert from 'node:assert/strict';
import { existsSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { test } from 'node:test';
import { TRAY_STATES, trayPresentation, trayStateOf, trayStateOfAgent, type TrayMenuItem } from './tray-state.js';

const ASSETS = fileURLToPath(new URL('../../assets/tray/', import.meta.url));
const actions = (menu: TrayMenuItem[]) => menu.flatMap((m) => (m.kind === 'action' ? [`${m.action}${m.enabled ? '' : ' (disabled)'}`] : []));

test('every state has its own icon, at 16 px and @2x, in assets/tray', () => {
  const icons = TRAY_STATES.map((s) => trayPresentation(s).icon);
  assert.deepEqual(icons, ['tray-idle.png', 'tray-busy.png', 'tray-frozen.png', 'tray-paused.png', 'tray-offline.png']);
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
});

test('the menu: status first, pause or resume, quit last', () => {
  const idle = trayPresentation('idle').menu;
  assert.deepEqual(idle[0], { kind: 'status', label: 'Idle — ready for builds' });
  assert.deepEqual(actions(idle), ['open-dashboard', 'pause', 'snooze', 'quit']);
  assert.deepEqual(actions(trayPresentation('paused').menu), ['open-dashboard', 'resume', 'quit']);
  assert.deepEqual(actions(trayPresentation('offline').menu), ['open-dashboard', 'pause (disabled)', 'snooze (disabled)', 'quit']);
  assert.deepEqual(idle.at(-1), { kind: 'action', action: 'quit', label: 'Quit Crowdbake', enabled: true });
});

test('with an agent, autostart and no master: the volunteer page, Start at login and the master switch', () => {
  const menu = trayPresentation('busy', { hasAgent: true, autostart: true, runsMaster: false }).menu;
  assert.deepEqual(actions(menu), ['open-dashboard', 'open-volunteer', 'pause', 'snooze', 'start-master', 'quit']);
  assert.deepEqual(menu.find((m) => m.kind === 'check'), { kind: 'check', action: 'toggle-autostart', label: 'Start at login', checked: true });
  assert.deepEqual(actions(trayPresentation('offline', { hasAgent: false, runsMaster: true }).menu), ['open-dashboard', 'open-volunteer (disabled)', 'pause (disabled)', 'snooze (disabled)', 'quit']);
  assert.equal(trayStateOfAgent(null), 'offline');
  assert.equal(trayStateOfAgent({ state: 'frozen' }), 'frozen');
});

test('the state from the worker view and the pause switch', () => {
  assert.equal(trayStateOf(null, false), 'offline');
  assert.equal(trayStateOf({ connected: false, state: 'idle' }, true), 'offline');
  assert.equal(trayStateOf({ connected: true, state: 'busy' }, false), 'busy');
  assert.equal(trayStateOf({ connected: true, state: 'busy' }, true), 'paused');
  assert.equal(trayStateOf({ connected: true, state: 'frozen' }, false), 'frozen');
  assert.equal(trayStateOf({ connected: true, state: 'idle' }, false), 'idle');
});
